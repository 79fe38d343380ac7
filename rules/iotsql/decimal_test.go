package iotsql

import (
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestDecimalFormatAndParse(t *testing.T) {
	tests := []struct{ in, out string }{
		{"21.7", "21.7"}, {"10.0", "10.0"}, {"1.50", "1.50"}, {"-0.5", "-0.5"}, {"0", "0"},
		{"1e3", "1E+3"}, {"1.5E300", "1.5E+300"}, {"5E-12", "5E-12"}, {"0.000001", "0.000001"},
		{"0.0000001", "1E-7"}, {"123456789012345678", "123456789012345678"},
		{"1234567890123456789", "1.23456789012345679E+18"}, {"-0.0", "0.0"}, {"0.000000000", "0E-9"},
		{"9999999999999999995", "1.00000000000000000E+19"}, {"1.0000000000000000005", "1.00000000000000000"},
		{"1.0000000000000000015", "1.00000000000000000"}, {"1.0000000000000000025", "1.00000000000000000"},
		{"2.5000000000000000050", "2.50000000000000000"}, {"2.5000000000000000051", "2.50000000000000001"},
	}
	for _, tt := range tests {
		d, ok := parseDec(tt.in)
		if !ok || d.String() != tt.out {
			t.Errorf("parseDec(%q) = %v (%v), want %s", tt.in, d, ok, tt.out)
		}
	}
	for _, bad := range []string{"", "-", ".", "1e", "1x", "1E1000", "1e-1001"} {
		if d, ok := parseDec(bad); ok {
			t.Errorf("parseDec(%q) = %v, want failure", bad, d)
		}
	}
}

func TestNumDigits(t *testing.T) {
	for _, u := range []uint64{0, 1, 9, 10, 99, 100, 999, 1000, 1 << 40, maxCoef, maxCoef + 1, 1e19 - 1, 1e19, 1<<64 - 1} {
		if got, want := numDigits(u), len(strconv.FormatUint(u, 10)); got != want {
			t.Errorf("numDigits(%d) = %d, want %d", u, got, want)
		}
	}
}

// finishDec keeps its coefficient in an int64: more than 18 digits is refused, never wrapped.
func TestFinishDecBounds(t *testing.T) {
	tests := []struct {
		neg  bool
		mag  uint64
		exp  int64
		want string // "" for refused
	}{
		{false, maxCoef, 0, "999999999999999999"},
		{true, maxCoef, -2, "-9999999999999999.99"},
		{false, maxCoef + 1, 0, ""},
		{true, 1 << 63, 0, ""}, // int64(mag) would wrap to MinInt64
		{false, 1<<64 - 1, 0, ""},
		{false, 1, 999, "1E+999"},
		{false, 1, 1000, ""},
	}
	for _, tt := range tests {
		d, ok := finishDec(tt.neg, tt.mag, tt.exp)
		if got := d.String(); ok != (tt.want != "") || (ok && got != tt.want) {
			t.Errorf("finishDec(%v, %d, %d) = %s, %v; want %q", tt.neg, tt.mag, tt.exp, got, ok, tt.want)
		}
	}
}

func TestDecimalFromFloat(t *testing.T) {
	tests := []struct {
		f   float64
		out string
	}{{3, "3.0"}, {32, "32.0"}, {0.5, "0.5"}, {39.06, "39.06"}, {1.5707963267948966, "1.5707963267948966"},
		{1e7, "1.0E+7"}, {1.5e10, "1.5E+10"}, {5e-4, "0.00050"}, {-2, "-2.0"}, {0, "0.0"}, {0.001, "0.001"}}
	for _, tt := range tests {
		d, ok := decFromFloat(tt.f)
		if !ok || d.String() != tt.out {
			t.Errorf("decFromFloat(%v) = %v, want %s", tt.f, d, tt.out)
		}
	}
}

func TestDecimalArithmeticExamples(t *testing.T) {
	p := func(s string) dec { d, _ := parseDec(s); return d }
	tests := []struct {
		got  func() (dec, bool)
		want string
	}{
		{func() (dec, bool) { return p("0.1").add(p("0.2")) }, "0.3"},
		{func() (dec, bool) { return p("21.7").mul(p("1.8")) }, "39.06"},
		{func() (dec, bool) { return p("48.2").mul(p("1.1")) }, "53.02"},
		{func() (dec, bool) { return p("1.50").add(p("1")) }, "2.50"},
		{func() (dec, bool) { return p("5").sub(p("0.5")) }, "4.5"},
		{func() (dec, bool) { return p("1.5").quo(p("0.5")) }, "3"},
		{func() (dec, bool) { return p("7").quo(p("2.0")) }, "3.5"},
		{func() (dec, bool) { return p("1").quo(p("3")) }, "0.333333333333333333"},
		{func() (dec, bool) { return p("2").quo(p("3")) }, "0.666666666666666667"},
		{func() (dec, bool) { return p("8.5").rem(p("3")) }, "2.5"},
		{func() (dec, bool) { return p("-8.5").rem(p("3")) }, "-2.5"},
		{func() (dec, bool) { return p("999999999999999999").add(p("0.6")) }, "1.00000000000000000E+18"},
		{func() (dec, bool) { return p("999999999999999999").add(p("0.4")) }, "999999999999999999"},
		{func() (dec, bool) { return p("1E+20").add(p("1E-20")) }, "1E+20"},
	}
	for i, tt := range tests {
		d, ok := tt.got()
		if !ok || d.String() != tt.want {
			t.Errorf("case %d = %v (%v), want %s", i, d, ok, tt.want)
		}
	}
	if c := p("21.7").cmp(p("80")); c != -1 {
		t.Errorf("21.7 cmp 80 = %d", c)
	}
	if c := p("1E+30").cmp(p("999999999999999999")); c != 1 {
		t.Errorf("1E30 cmp 999… = %d", c)
	}
	if c := p("-1E+30").cmp(p("-5")); c != -1 {
		t.Errorf("-1E30 cmp -5 = %d", c)
	}
	if c := p("2.50").cmp(p("2.5")); c != 0 {
		t.Errorf("2.50 cmp 2.5 = %d", c)
	}
}

// ratOf is the exact value of d.
func ratOf(d dec) *big.Rat {
	r, ok := new(big.Rat).SetString(d.String())
	if !ok {
		panic(d.String())
	}
	return r
}

// round18 rounds r half-even to 18 significant digits, exactly (the semantics of our decimals).
func round18(r *big.Rat) *big.Rat {
	if r.Sign() == 0 {
		return r
	}
	neg := r.Sign() < 0
	a := new(big.Rat).Abs(r)
	ten := big.NewRat(10, 1)
	lo := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(17), nil))
	hi := new(big.Rat).Mul(lo, ten)
	k := 0
	for a.Cmp(lo) < 0 {
		a.Mul(a, ten)
		k--
	}
	for a.Cmp(hi) >= 0 {
		a.Quo(a, ten)
		k++
	}
	// a in [1e17, 1e18): round to an integer, half-even.
	q, m := new(big.Int).QuoRem(a.Num(), a.Denom(), new(big.Int))
	twice := new(big.Int).Mul(m, big.NewInt(2))
	if c := twice.Cmp(a.Denom()); c > 0 || (c == 0 && q.Bit(0) == 1) {
		q.Add(q, big.NewInt(1))
	}
	out := new(big.Rat).SetInt(q)
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(k))), nil))
	if k >= 0 {
		out.Mul(out, scale)
	} else {
		out.Quo(out, scale)
	}
	if neg {
		out.Neg(out)
	}
	return out
}

func abs(k int) int {
	if k < 0 {
		return -k
	}
	return k
}

func TestDecimalArithmeticAgainstBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func() dec {
		var c int64
		switch rng.IntN(4) {
		case 0:
			c = rng.Int64N(1000)
		case 1:
			c = rng.Int64N(1_000_000_000)
		default:
			c = rng.Int64N(maxCoef + 1)
		}
		if rng.IntN(2) == 0 {
			c = -c
		}
		return dec{c, int32(rng.IntN(41) - 20)}
	}
	for i := 0; i < 5000; i++ {
		a, b := gen(), gen()
		ra, rb := ratOf(a), ratOf(b)
		check := func(op string, got dec, ok bool, want *big.Rat, exact bool) {
			t.Helper()
			if !ok {
				t.Fatalf("%v %s %v failed", a, op, b)
			}
			w := want
			if !exact {
				w = round18(want)
			}
			if ratOf(got).Cmp(w) != 0 {
				t.Fatalf("%v %s %v = %v, want %s", a, op, b, got, w.FloatString(40))
			}
		}
		s, ok := a.add(b)
		if diff := int64(a.exp) - int64(b.exp); diff <= 19 && diff >= -19 {
			check("+", s, ok, new(big.Rat).Add(ra, rb), false)
		}
		m, ok := a.mul(b)
		check("*", m, ok, new(big.Rat).Mul(ra, rb), false)
		if b.coef != 0 {
			q, ok := a.quo(b)
			check("/", q, ok, new(big.Rat).Quo(ra, rb), false)
		}
		if _, _, _, aligned := align(a, b); aligned && b.coef != 0 {
			r, ok := a.rem(b)
			// a - trunc(a/b)*b
			qt := new(big.Int).Quo(new(big.Int).Mul(ra.Num(), rb.Denom()), new(big.Int).Mul(ra.Denom(), rb.Num()))
			want := new(big.Rat).Sub(ra, new(big.Rat).Mul(new(big.Rat).SetInt(qt), rb))
			check("%", r, ok, want, true)
		}
		if got, want := a.cmp(b), ra.Cmp(rb); got != want {
			t.Fatalf("%v cmp %v = %d, want %d", a, b, got, want)
		}
		if p, ok := parseDec(a.String()); !ok || p != a {
			t.Fatalf("round trip %v -> %v", a, p)
		}
		if f, _ := strconv.ParseFloat(a.String(), 64); f != a.float() {
			t.Fatalf("float(%v) = %v, want %v", a, a.float(), f)
		}
	}
}
