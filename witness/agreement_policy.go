package witness

import "math"

// BinomialTail returns P(X >= k) for X ~ Bin(n, p): the chance that at
// least k of n independently chosen builders belong to an attacker holding
// a share p of the operators. It is the arithmetic behind the policy
// figures of docs/agreement.md, pinned by tests so the document cannot
// drift from the code.
func BinomialTail(n, k int, p float64) float64 {
	switch {
	case n < 0 || p < 0 || p > 1 || math.IsNaN(p):
		return math.NaN()
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p == 0:
		return 0
	case p == 1:
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	sum := 0.0
	for i := k; i <= n; i++ {
		sum += math.Exp(logChoose(n, i) + float64(i)*lp + float64(n-i)*lq)
	}
	return min(sum, 1)
}

// logChoose returns log C(n, k).
func logChoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// PoisonedAcceptance returns the probability that a poisoned build is
// accepted as reproduced under p when an attacker holds a share of the
// operators, leases go to operators at random, and every honest lease
// returns a result: the attacker must hold enough leases both to reach the
// quorum and to leave at most MaxDissent honest results, i.e.
// P(Bin(Leases, share) >= max(Quorum, Leases-MaxDissent)). For the default
// policy that is P(Bin(10, share) >= 9).
func (p Policy) PoisonedAcceptance(share float64) float64 {
	return BinomialTail(p.Leases, max(p.Quorum, p.Leases-p.MaxDissent), share)
}

// RacingAcceptance is PoisonedAcceptance for an engine that decided on the
// first Quorum results to arrive (what Agree refuses to do): colluders
// return at once, so holding Quorum of the Leases leases is enough:
// P(Bin(Leases, share) >= Quorum).
func (p Policy) RacingAcceptance(share float64) float64 {
	return BinomialTail(p.Leases, p.Quorum, share)
}

// FirstArrivalsAcceptance is the same early decision when the attacker does
// not race and results arrive in random order: the first Quorum results all
// come from the attacker with probability share^Quorum.
func (p Policy) FirstArrivalsAcceptance(share float64) float64 {
	return math.Pow(share, float64(p.Quorum))
}
