package measure

import (
	"os"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	if got := Summarize(ms(300, 100, 200)); got != (Stat{Med: 200 * time.Millisecond, Min: 100 * time.Millisecond, Max: 300 * time.Millisecond}) {
		t.Errorf("odd: %+v", got)
	}
	if got := Summarize(ms(400, 100, 200, 300)); got.Med != 250*time.Millisecond {
		t.Errorf("even median %s, want 250ms", got.Med)
	}
	if got := Summarize(nil); got != (Stat{}) {
		t.Errorf("empty: %+v", got)
	}
	if s := Summarize(ms(1500)).String(); s != "1.500 / 1.500 / 1.500" {
		t.Errorf("String %q", s)
	}
}

func TestProcOfSelf(t *testing.T) {
	if _, err := CPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if kib, err := StatusKiB(os.Getpid(), "VmRSS"); err != nil || kib <= 0 {
		t.Fatalf("VmRSS %d %v", kib, err)
	}
	if _, err := StatusKiB(os.Getpid(), "NoSuchField"); err == nil {
		t.Fatal("missing field accepted")
	}
}
