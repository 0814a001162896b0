package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
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
		svg := barChart(fmt.Sprintf("Main stage throughput by processes (%d partitions, median of %d rounds, %s)", r.Config.Partitions, len(r.Scaling), r.Machine),
			"orders/s", labels, names, series, "%.0f")
		if err := os.WriteFile(filepath.Join(dir, "scaling.svg"), []byte(svg), 0o644); err != nil {
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
		svg := barChart(fmt.Sprintf("Retry lateness past the due time (%d orders at %.0f/s; 0 early)", r.Config.DelayOrders, r.Config.DelayRate),
			"ms", labels, []string{"p50", "p99", "max"}, series, "%.1f")
		if early := r.totalEarly(); early > 0 {
			svg = strings.Replace(svg, "; 0 early)", fmt.Sprintf("; %d early)", early), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, "lateness.svg"), []byte(svg), 0o644); err != nil {
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

var palette = []string{"#4e79a7", "#f28e2b", "#e15759"}

// barChart draws groups of bars, one group per label and one bar per
// series, with the value above each bar.
func barChart(title, unit string, labels, names []string, series [][]float64, format string) string {
	const w, h, left, right, top, bottom = 720, 400, 80, 20, 50, 60
	top2 := 0.0
	for _, s := range series {
		for _, v := range s {
			top2 = math.Max(top2, v)
		}
	}
	step := niceStep(top2 / 5)
	ymax := math.Ceil(top2/step) * step
	if ymax == 0 {
		ymax = 1
	}
	plotW, plotH := float64(w-left-right), float64(h-top-bottom)
	y := func(v float64) float64 { return float64(top) + plotH*(1-v/ymax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="14" font-weight="bold">%s</text>`+"\n", left, escape(title))
	for v := 0.0; v <= ymax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, escape(fmt.Sprintf("%g", v)))
	}
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">%s</text>`+"\n",
		float64(top)+plotH/2, float64(top)+plotH/2, escape(unit))
	groupW := plotW / float64(len(labels))
	barW := groupW * 0.7 / float64(len(series))
	for g, label := range labels {
		x0 := float64(left) + groupW*float64(g) + groupW*0.15
		for s := range series {
			v := series[s][g]
			x := x0 + barW*float64(s)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y(v), barW-2, y(0)-y(v), palette[s%len(palette)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+barW/2-1, y(v)-4, escape(fmt.Sprintf(format, v)))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x0+groupW*0.35, h-bottom+20, escape(label))
	}
	if len(names) > 1 {
		for s, name := range names {
			x := w - right - 80*(len(names)-s)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
				x, h-22, palette[s%len(palette)], x+16, h-12, escape(name))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, w-right, y(0), y(0))
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds a raw axis step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
