package chaos

import (
	"fmt"
	"strings"
	"time"
)

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run (%s, %d nodes): %d orders in %v (work dir %s)\n", r.Mode, r.Nodes, r.Orders, r.Elapsed.Round(time.Second), r.WorkDir)
	if r.Mode != ModeCluster {
		fmt.Fprintf(&b, "  faults:     %d SIGKILLs and restarts, %d SIGSTOPs past the session timeout, %d scaling steps, %d broker kills\n",
			r.Kills, r.Stops, r.ScaleSteps, r.BrokerRestarts)
	}
	var faults []string
	for _, f := range r.Faults {
		faults = append(faults, fmt.Sprintf("%s %d (hits %d)", f.Kind, f.Injected, f.Hits))
	}
	if len(faults) > 0 {
		fmt.Fprintf(&b, "  protocol:   %s", strings.Join(faults, ", "))
		if r.FaultFailures > 0 {
			fmt.Fprintf(&b, "; %d not injected (broker down)", r.FaultFailures)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  outcomes:   %d processed, %d dead-lettered, %d lost, %d in both\n", r.Processed, r.DeadLettered, r.Lost, r.InBoth)
	fmt.Fprintf(&b, "  wrong:      %d good orders dead-lettered, %d failing orders processed, %d retries before due\n", r.GoodDead, r.BadProcessed, r.Early)
	pct := 0.0
	if r.Orders > 0 {
		pct = 100 * float64(r.Duplicates) / float64(r.Orders)
	}
	fmt.Fprintf(&b, "  duplicates: %d in processed (%.2f%% of orders, bound %d), %d in the DLQ\n", r.Duplicates, pct, r.DuplicateBound, r.DLQDuplicates)
	var causes []string
	for _, c := range r.ByCause {
		bound := "bound 0: a definite refusal"
		switch {
		case c.Cause == CauseNone:
			bound = "bound 0: no fault explains it"
		case unknowable(c.Cause):
			bound = fmt.Sprintf("bound %d", c.Bound)
		}
		causes = append(causes, fmt.Sprintf("%s %d (%s)", c.Cause, c.Duplicates, bound))
	}
	fmt.Fprintf(&b, "  by cause:   %s", strings.Join(causes, ", "))
	if r.Ambiguous > 0 {
		fmt.Fprintf(&b, "; %d of them could also be a definite refusal's", r.Ambiguous)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  average:    relative error %.3g\n", r.AverageRelErr)
	if len(r.Stalls) > 0 {
		b.WriteString("  stalls:     longest a partition with lag made no progress, charged to the first fault in force in it; resume: after the fault ended, with no other fault in force, the aggregator left out\n")
		for _, s := range r.Stalls {
			resume := "-"
			if s.Clean > 0 {
				resume = fmt.Sprintf("%v %s (%d of %d faults clean)", s.Resume.Round(10*time.Millisecond), s.ResumeWhere, s.Clean, s.Events)
			}
			if s.Cause == CauseNone {
				resume = ""
			}
			fmt.Fprintf(&b, "    %-20s stall %7v %-14s resume %s\n", s.Cause, s.Longest.Round(10*time.Millisecond), s.Where, resume)
		}
	}
	switch {
	case r.FaultsEnd.IsZero():
	case r.CatchUp < 0:
		b.WriteString("  catch-up:   the groups did not catch up (see the violations)\n")
	default:
		if r.ProducedAt.After(r.FaultsEnd) {
			fmt.Fprintf(&b, "  catch-up:   every group's lag 0 %v after the production ended, %v after the faults stopped\n",
				r.CatchUp.Round(100*time.Millisecond), (r.CatchUp + r.ProducedAt.Sub(r.FaultsEnd)).Round(100*time.Millisecond))
		} else {
			fmt.Fprintf(&b, "  catch-up:   every group's lag 0 %v after the faults stopped\n", r.CatchUp.Round(100*time.Millisecond))
		}
	}
	if len(r.Violations) == 0 {
		b.WriteString("  result:     OK\n")
	} else {
		fmt.Fprintf(&b, "  result:     %d VIOLATIONS\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "    - %s\n", v)
		}
	}
	return b.String()
}
