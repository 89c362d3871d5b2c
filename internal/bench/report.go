package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Conditions describe where and how the figures were taken.
type Conditions struct {
	Machine  string
	Postgres string
	E2E      E2EConfig
	When     time.Time
}

// Report writes the Markdown tables: the store cases with their ratios, the end-to-end runs,
// and each target of issue 7 with the measured figure.
func Report(w io.Writer, c Conditions, st []StoreResult, e E2EResult) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("### Conditions")
	p("")
	p("- %s; %s; Go %s; %s.", c.Machine, c.Postgres, strings.TrimPrefix(runtime.Version(), "go"), c.When.UTC().Format("2006-01-02 15:04 MST"))
	p("- PostgreSQL with production durability settings (fsync, synchronous_commit, full_page_writes on), data on tmpfs.")
	if len(e.Runs) > 0 {
		p("- The real `sync-all` binary against the simulator over HTTP on loopback, %s added to every request, page cap %d points; the simulator, PostgreSQL and the job share the machine's cores.", c.E2E.Latency, c.E2E.PageSize)
		p("- First sync: one full local day per participant (`--date %s`, a day that has ended in every zone).", e.FullDay)
	}
	p("")
	if len(st) > 0 {
		p("### Store: one participant-day (%d rows: 1,440 heart-rate, 288 steps, 288 calories windows and the summary)", st[0].Rows)
		p("")
		p("| Case | Days | Median | Fastest | Rows/s | WAL per day | Rows written |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		for _, r := range st {
			p("| %s | %d | %s | %s | %s | %s | %d |", r.Case, r.Iterations, ms(r.Median), ms(r.Min), thousands(int64(r.RowsPerSec())), bytesOf(r.WALBytes), r.Written)
		}
		cold, copyR, rbr := find(st, "cold"), find(st, "COPY"), find(st, "row by row")
		if cold.Median > 0 && copyR.Median > 0 && rbr.Median > 0 {
			p("")
			p("Set-based cold upsert: %.1f× the time of COPY (the limit); row by row takes %.0f× the set-based time.",
				cold.Median.Seconds()/copyR.Median.Seconds(), rbr.Median.Seconds()/cold.Median.Seconds())
		}
		p("")
	}
	if len(e.Runs) > 0 {
		p("### End to end")
		p("")
		p("| Run | Participants | Wall | Participants/s | API calls per participant | Rows inserted | Rows updated | WAL | Peak RSS | Flags |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, r := range e.Runs {
			p("| %s | %s | %.2f s | %.1f | %.2f | %s | %s | %s | %s | `%s` |", r.Name, thousands(int64(r.Participants)),
				r.Wall.Seconds(), r.PerSec(), r.CallsPer(), thousands(r.Inserted), thousands(r.Updated), bytesOf(r.WALBytes),
				mib(r.PeakRSSKiB), r.Flags)
		}
		p("")
		p("Where the time goes (CPU seconds during each run; the machine has %d cores):", runtime.NumCPU())
		p("")
		p("| Run | sync-all | simulator | PostgreSQL and the rest | Machine busy |")
		p("|---|---:|---:|---:|---:|")
		for _, r := range e.Runs {
			rest := r.MachineCPU - r.JobCPU - r.SimCPU
			p("| %s | %.1f s | %.1f s | %.1f s | %.0f%% |", r.Name, r.JobCPU.Seconds(), r.SimCPU.Seconds(), max(rest, 0).Seconds(), 100*r.Busy())
		}
		p("")
		if first, ok := e.Run(RunFirst); ok {
			for _, name := range []string{RunSequential, RunOneAtATime} {
				if b, ok := e.Run(name); ok {
					p("First sync: %.1f× the participants/s of the %s.", first.PerSec()/b.PerSec(), strings.TrimPrefix(name, "first sync, "))
				}
			}
		}
		if one, ok := e.Run(RunScaleOne); ok {
			if three, ok := e.Run(RunScaleThree); ok {
				p("Scale-out: 3 processes took %.2f× the wall time of 1. Each participant once: %v (%s).",
					three.Wall.Seconds()/one.Wall.Seconds(), e.ScaleOnce, e.ScaleNote)
			}
		}
		p("")
	}
	p("### Targets")
	p("")
	p("| Target | Measured | Met |")
	p("|---|---|---|")
	target := func(name, measured string, ok bool) { p("| %s | %s | %s |", name, measured, yes(ok)) }
	if un := find(st, "unchanged"); un.Iterations > 0 {
		target("Unchanged re-upsert: 0 rows rewritten, WAL < 1 KiB", fmt.Sprintf("%d rows, %s", un.Written, bytesOf(un.WALBytes)),
			un.Written == 0 && un.WALBytes < 1024)
	}
	if r, ok := e.Run(RunSteadyBig); ok {
		target("Steady state: exactly 1 API call per participant", fmt.Sprintf("%.3f", r.CallsPer()), r.APICalls == int64(r.Participants))
		target(fmt.Sprintf("Steady state: %s participants < 30 s", thousands(int64(r.Participants))), fmt.Sprintf("%.2f s", r.Wall.Seconds()), r.Wall < 30*time.Second)
		target("Steady state: peak RSS < 100 MiB", mib(r.PeakRSSKiB), r.PeakRSSKiB >= 0 && r.PeakRSSKiB < 100*1024)
	}
	if r, ok := e.Run(RunFirst); ok {
		target(fmt.Sprintf("First sync of %s participant-days < 45 s", thousands(int64(r.Participants))), fmt.Sprintf("%.2f s", r.Wall.Seconds()), r.Wall < 45*time.Second)
		if seq, ok := e.Run(RunSequential); ok {
			x := r.PerSec() / seq.PerSec()
			target("First sync ≥ 20× the sequential baseline's participants/s", fmt.Sprintf("%.1f×", x), x >= 20)
		}
		if one, ok := e.Run(RunOneAtATime); ok {
			x := r.PerSec() / one.PerSec()
			target("(also) ≥ 20× one participant at a time with its day's calls at once", fmt.Sprintf("%.1f×", x), x >= 20)
		}
	}
	if one, ok := e.Run(RunScaleOne); ok {
		if three, ok := e.Run(RunScaleThree); ok {
			x := three.Wall.Seconds() / one.Wall.Seconds()
			target("Scale-out: 3 processes ≤ 0.45× the time of 1, no participant twice", fmt.Sprintf("%.2f×, once each: %v", x, e.ScaleOnce), x <= 0.45 && e.ScaleOnce)
		}
	}
}

func mib(kib int64) string {
	if kib < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d MiB", kib/1024)
}

func find(rs []StoreResult, substr string) StoreResult {
	for _, r := range rs {
		if strings.Contains(r.Case, substr) {
			return r
		}
	}
	return StoreResult{}
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func bytesOf(n int64) string {
	switch {
	case n < 0:
		return "n/a"
	case n < 10*1024:
		return fmt.Sprintf("%s B", thousands(n))
	case n < 10*1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1024*1024))
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
