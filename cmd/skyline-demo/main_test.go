package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/demo"
)

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"--scenario", "nope"}, {"extra"}, {"--no-such-flag"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (usage); stderr %q", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "--scenario") {
		t.Errorf("--help = %d, %q", code, errb.String())
	}
}

func TestMissingBinaryFailsBeforeStarting(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--skyline", "/nonexistent/skyline", "--dir", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "not an executable") {
		t.Errorf("run = %d, stderr %q; want 1 naming the missing binary", code, errb.String())
	}
}

// TestProgressLine: on a terminal the progress line is redrawn in place
// and ended before the narration goes on; elsewhere a line is printed
// only when the counts change.
func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	l := &lineWriter{w: &b, tty: true}
	l.progress(demo.Progress{Jobs: 5, Wanted: 50, Results: 10, Live: 3, Elapsed: time.Second})
	l.progress(demo.Progress{Jobs: 5, Wanted: 50, Results: 25, Live: 3, Elapsed: 2 * time.Second})
	l.Write([]byte("next\n"))
	got := b.String()
	if strings.Count(got, "\r\033[K") != 2 || !strings.HasSuffix(got, "2s\nnext\n") || !strings.Contains(got, "25/50 results") {
		t.Errorf("terminal output %q", got)
	}

	b.Reset()
	l = &lineWriter{w: &b}
	for range 3 {
		l.progress(demo.Progress{Jobs: 5, Wanted: 50, Results: 10})
	}
	l.progress(demo.Progress{Jobs: 5, Wanted: 50, Results: 11})
	if n := strings.Count(b.String(), "\n"); n != 2 || strings.Contains(b.String(), "\r") {
		t.Errorf("non-terminal output %q: want 2 lines", b.String())
	}
}
