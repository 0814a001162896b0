package outcome

import (
	"fmt"
	"slices"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/topology"
)

// Problems lists what is wrong with the outcomes of orders in t: each must
// have exactly the outcome its product calls for (failing says which fail
// for good), be processed as it was produced, and, dead-lettered, have
// passed every stage of top no earlier than its delay. It also returns how
// many orders must be processed and their exact average price, for a
// check of the aggregator.
func (t *Tally) Problems(orders []schemas.Order, top topology.Topology, failing func(schemas.Order) bool) (problems []string, good int, average float64) {
	var sum float64
	for _, o := range orders {
		p, processed := t.Processed[o.OrderID]
		d, dead := t.Dead[o.OrderID]
		switch {
		case processed && dead:
			problems = append(problems, fmt.Sprintf("order %s is both processed and dead-lettered", o.OrderID))
		case !processed && !dead:
			problems = append(problems, fmt.Sprintf("order %s lost", o.OrderID))
		case failing(o) && processed:
			problems = append(problems, fmt.Sprintf("failing order %s processed by %s", o.OrderID, p.By))
		case !failing(o) && dead:
			problems = append(problems, fmt.Sprintf("good order %s dead-lettered: %s", o.OrderID, d.Letter.Error))
		case processed && p.Order != o:
			problems = append(problems, fmt.Sprintf("order %s processed as %+v, produced as %+v", o.OrderID, p.Order, o))
		case dead:
			problems = append(problems, deadLetterProblems(o.OrderID, d.Letter, top)...)
		}
		if !failing(o) {
			sum += float64(o.Price)
			good++
		}
	}
	if good > 0 {
		average = sum / float64(good)
	}
	return problems, good, average
}

// deadLetterProblems lists what is wrong with the DLQ record of an order
// that failed everywhere: it must have gone through every stage of top,
// each no earlier than its delay after the failure before.
func deadLetterProblems(key string, d envelope.DeadLetter, top topology.Topology) []string {
	var stages []string
	for _, f := range d.Errors {
		stages = append(stages, f.Stage)
	}
	want := []string{topology.StageMain}
	for k := 1; k <= top.Stages(); k++ {
		want = append(want, topology.RetryStageName(k))
	}
	last := want[len(want)-1]
	if d.Attempts != len(want) || d.Reason != envelope.ReasonRetriesExhausted || !slices.Equal(stages, want) || d.Stage != last {
		return []string{fmt.Sprintf("DLQ record of %s: attempts %d reason %s stage %s history %v; want %d %s %s %v",
			key, d.Attempts, d.Reason, d.Stage, stages, len(want), envelope.ReasonRetriesExhausted, last, want)}
	}
	var problems []string
	if d.Topic != top.Orders || d.Key != key || d.RawValueHex == "" {
		problems = append(problems, fmt.Sprintf("DLQ record of %s: topic %q key %q raw %q", key, d.Topic, d.Key, d.RawValueHex))
	}
	for k := 1; k < len(d.Errors); k++ {
		due := d.Errors[k-1].At.Add(top.Delay(k))
		if early := due.Sub(d.Errors[k].At); early > 0 {
			problems = append(problems, fmt.Sprintf("order %s handled by %s %v before it was due", key, d.Errors[k].Stage, early))
		}
	}
	return problems
}
