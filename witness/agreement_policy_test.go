package witness

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

// TestBinomialTail checks BinomialTail against values worked out by hand
// and against its edge cases.
func TestBinomialTail(t *testing.T) {
	for _, tt := range []struct {
		n, k int
		p    float64
		want float64
	}{
		// P(Bin(10, 0.1) >= 9) = 10 * 0.1^9 * 0.9 + 0.1^10
		{10, 9, 0.1, 10*math.Pow(0.1, 9)*0.9 + math.Pow(0.1, 10)},
		{10, 9, 0.33, 10*math.Pow(0.33, 9)*0.67 + math.Pow(0.33, 10)},
		{10, 10, 0.5, 1.0 / 1024},
		{10, 5, 0.5, 638.0 / 1024}, // (252+210+120+45+10+1)/1024
		{4, 1, 0.5, 15.0 / 16},
		{10, 0, 0.3, 1},
		{10, 11, 0.3, 0},
		{10, 3, 0, 0},
		{10, 3, 1, 1},
	} {
		got := BinomialTail(tt.n, tt.k, tt.p)
		if (tt.want == 0 && got != 0) || (tt.want != 0 && math.Abs(got-tt.want)/tt.want > 1e-9) {
			t.Errorf("BinomialTail(%d, %d, %v) = %v, want %v", tt.n, tt.k, tt.p, got, tt.want)
		}
	}
	for _, p := range []float64{-0.1, 1.1, math.NaN()} {
		if !math.IsNaN(BinomialTail(10, 3, p)) {
			t.Errorf("BinomialTail(10, 3, %v) is not NaN", p)
		}
	}
}

// policyFigures returns the lines docs/agreement.md must contain, computed
// here so that the document cannot drift from the code.
func policyFigures() []string {
	p := DefaultPolicy()
	var lines []string
	for _, share := range []float64{0.01, 0.05, 0.1, 0.2, 0.33, 0.5} {
		lines = append(lines, fmt.Sprintf("| %.2f | %.2g | %.2g | %.2g |", share, p.PoisonedAcceptance(share), p.RacingAcceptance(share), p.FirstArrivalsAcceptance(share)))
	}
	for _, c := range []struct {
		n, k int
		p    float64
	}{
		{500, 25, 0.01}, {5000, 250, 0.01}, {500, 25, 0.02}, {500, 25, 0.03}, {5000, 250, 0.04},
	} {
		lines = append(lines, fmt.Sprintf("P(Bin(%d, %.2f) ≥ %d) = %.2g", c.n, c.p, c.k, BinomialTail(c.n, c.k, c.p)))
	}
	return lines
}

// TestPolicyFiguresDocumented pins the figures of docs/agreement.md and
// the architecture's "about 1e-8 at p = 0.1, 3e-4 at p = 0.33".
func TestPolicyFiguresDocumented(t *testing.T) {
	p := DefaultPolicy()
	if got := p.PoisonedAcceptance(0.1); math.Abs(got-9.1e-9) > 1e-11 {
		t.Errorf("P(Bin(10, 0.1) >= 9) = %v, want 9.1e-9", got)
	}
	if got := p.PoisonedAcceptance(0.33); math.Abs(got-3.26e-4) > 1e-6 {
		t.Errorf("P(Bin(10, 0.33) >= 9) = %v, want 3.26e-4", got)
	}
	doc, err := os.ReadFile("../docs/agreement.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range policyFigures() {
		if !strings.Contains(string(doc), line) {
			t.Errorf("docs/agreement.md does not contain %q", line)
		}
	}
}
