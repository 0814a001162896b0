package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WritePlots writes scaling.svg (row 8) and lateness.svg (row 4) to dir.
func (r Report) WritePlots(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var names []string
	var series [][]float64
	for _, c := range r.scalingCurves() {
		if len(*c.runs) > 0 {
			names, series = append(names, c.name), append(series, r.ScalingMedians(*c.runs))
		}
	}
	if len(r.Scaling) > 0 {
		var labels []string
		for _, n := range r.Config.Procs {
			labels = append(labels, fmt.Sprintf("%d process", n)+plural(n))
		}
		svg, err := barChart(fmt.Sprintf("Main stage throughput by processes\n(%d partitions, median of %d rounds, %s)", r.Config.Partitions, len(r.Scaling), r.Machine),
			"orders/s", labels, names, series, "%.0f")
		if err != nil {
			return fmt.Errorf("scaling plot: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scaling.svg"), svg, 0o644); err != nil {
			return err
		}
	}
	if len(r.Lateness) > 0 {
		var labels []string
		series := make([][]float64, 3)
		for _, l := range r.Lateness {
			labels = append(labels, fmt.Sprintf("retry-%d (%v)", l.Stage, l.Delay))
			series[0] = append(series[0], float64(l.P50.Microseconds())/1000)
			series[1] = append(series[1], float64(l.P99.Microseconds())/1000)
			series[2] = append(series[2], float64(l.Max.Microseconds())/1000)
		}
		svg, err := barChart(fmt.Sprintf("Retry lateness past the due time\n(%d orders at %.0f/s; %d early)", r.Config.DelayOrders, r.Config.DelayRate, r.totalEarly()),
			"ms", labels, []string{"p50", "p99", "max"}, series, "%.1f")
		if err != nil {
			return fmt.Errorf("lateness plot: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "lateness.svg"), svg, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r Report) totalEarly() int {
	n := 0
	for _, l := range r.Lateness {
		n += l.Early
	}
	return n
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "es"
}

var palette = []color.Color{
	color.RGBA{0x4e, 0x79, 0xa7, 0xff},
	color.RGBA{0xf2, 0x8e, 0x2b, 0xff},
	color.RGBA{0xe1, 0x57, 0x59, 0xff},
}

// The plots' size and the share of a group's width its bars take.
const (
	plotW, plotH = 8 * vg.Inch, 4.5 * vg.Inch
	barsShare    = 0.7
)

// barChart draws groups of bars as SVG, one group per label and one bar
// per series, with the value above each bar and, for more than one
// series, a legend of names beside the plot.
func barChart(title, unit string, labels, names []string, series [][]float64, format string) ([]byte, error) {
	p := plot.New()
	p.Y.Label.Text = unit
	p.NominalX(labels...)
	for _, s := range []*text.Style{&p.X.Tick.Label, &p.Y.Tick.Label, &p.Y.Label.TextStyle} {
		s.Font.Variant = "Sans"
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	// One unit of x per group, and room above the tallest bar for its value.
	top := 0.0
	for _, s := range series {
		for _, v := range s {
			top = max(top, v)
		}
	}
	p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
	p.Y.Min, p.Y.Max = 0, max(top*1.12, 1)

	// The bars' width, in points, follows from the data area, which the
	// legend narrows: set it once the area is known.
	var bars []*plotter.BarChart
	var above []*plotter.Labels
	legend := plot.NewLegend()
	legend.TextStyle.Font.Variant = "Sans"
	legend.Top, legend.Left = true, true
	for s, vs := range series {
		b, err := plotter.NewBarChart(plotter.Values(vs), 1)
		if err != nil {
			return nil, err
		}
		b.Color, b.LineStyle.Width = palette[s%len(palette)], 0
		values := plotter.XYLabels{XYs: make(plotter.XYs, len(vs)), Labels: make([]string, len(vs))}
		for i, v := range vs {
			values.XYs[i] = plotter.XY{X: float64(i), Y: v}
			values.Labels[i] = fmt.Sprintf(format, v)
		}
		l, err := plotter.NewLabels(values)
		if err != nil {
			return nil, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Variant, l.TextStyle[i].Font.Size = "Sans", vg.Points(9)
			l.TextStyle[i].XAlign = draw.XCenter
		}
		p.Add(b, l)
		bars, above = append(bars, b), append(above, l)
		legend.Add(names[s], b)
	}

	c := vgsvg.New(plotW, plotH)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	// The title spans the whole width, the legend's too: the plot's own
	// would be centred over the plot alone.
	heading, details, _ := strings.Cut(title, "\n")
	at := vg.Point{X: dc.Center().X, Y: dc.Max.Y - vg.Points(6)}
	for i, line := range []string{heading, details} {
		if line == "" {
			continue
		}
		sty := p.X.Tick.Label
		sty.Font.Size, sty.XAlign, sty.YAlign = vg.Points(10), draw.XCenter, draw.YTop
		if i == 0 {
			sty.Font.Size, sty.Font.Weight = vg.Points(12), xfont.WeightBold
		}
		dc.FillText(sty, at, line)
		at.Y -= sty.Rectangle(line).Size().Y + vg.Points(2)
	}
	area := draw.Crop(dc, 0, 0, 0, at.Y-dc.Max.Y-vg.Points(6))
	if len(names) > 1 {
		area = draw.Crop(area, 0, -(legend.Rectangle(dc).Size().X + vg.Points(16)), 0, 0)
	}
	barW := p.DataCanvas(area).Size().X / vg.Length(len(labels)) * barsShare / vg.Length(len(series))
	for s, b := range bars {
		b.Width = barW
		b.Offset = (vg.Length(s) - vg.Length(len(series)-1)/2) * barW
		above[s].Offset = vg.Point{X: b.Offset, Y: vg.Points(3)}
	}
	p.Draw(area)
	if len(names) > 1 {
		data := p.DataCanvas(area)
		legend.Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: area.Max.X + vg.Points(8), Y: data.Min.Y},
			Max: vg.Point{X: dc.Max.X, Y: data.Max.Y},
		}})
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
