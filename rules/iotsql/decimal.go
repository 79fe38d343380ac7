package iotsql

import (
	"math"
	"math/bits"
	"strconv"
)

// dec is a decimal number coef × 10^exp, the way AWS IoT's Decimal (a Java BigDecimal) is: "21.7"
// is 217 × 10^-1 and keeps its scale, so arithmetic on telemetry values is exact (0.1 + 0.2 = 0.3,
// 21.7 × 1.8 = 39.06) and prints as AWS prints it. The reference's Decimal has 34 significant digits;
// here the coefficient has at most 18, and results are rounded half-even to 18 digits.
type dec struct {
	coef int64
	exp  int32
}

const (
	maxCoef = 999_999_999_999_999_999 // 18 digits
	// The reference's range: minimum non-zero magnitude 1E-999, maximum 9.999…E999.
	minAdjExp = -999
	maxAdjExp = 999
)

var pow10u = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
	1e15, 1e16, 1e17, 1e18, 1e19}

var pow10 = [...]int64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000,
	1_000_000_000, 10_000_000_000, 100_000_000_000, 1_000_000_000_000, 10_000_000_000_000,
	100_000_000_000_000, 1_000_000_000_000_000, 10_000_000_000_000_000, 100_000_000_000_000_000,
	1_000_000_000_000_000_000}

// numDigits is the number of decimal digits of u (1 for 0).
func numDigits(u uint64) int {
	n := (bits.Len64(u) * 1233) >> 12 // ≈ log10(2) × bit length
	if n < len(pow10u) && u >= pow10u[n] {
		n++
	}
	if n == 0 {
		return 1
	}
	return n
}

func absU(c int64) uint64 {
	if c < 0 {
		return uint64(-c) // also right for MinInt64
	}
	return uint64(c)
}

// makeDec builds a dec from a sign, an unsigned magnitude of any size and an exponent, rounding
// half-even to 18 digits. ok is false when the magnitude is out of the reference's range.
func makeDec(neg bool, mag uint64, exp int64) (dec, bool) {
	return makeDec128(neg, 0, mag, exp)
}

// makeDec128 is makeDec for a 128-bit magnitude hi:lo.
func makeDec128(neg bool, hi, lo uint64, exp int64) (dec, bool) {
	var last uint64 // the most significant digit dropped so far
	sticky := false // whether any less significant dropped digit was non-zero
	removed := false
	for hi != 0 || lo > maxCoef {
		if removed && last != 0 {
			sticky = true
		}
		var rem uint64
		hi, rem = bits.Div64(0, hi, 10)
		lo, rem = bits.Div64(rem, lo, 10)
		last, removed = rem, true
		exp++
	}
	if removed && (last > 5 || (last == 5 && (sticky || lo%2 == 1))) { // half-even
		lo++
		if lo > maxCoef {
			lo /= 10
			exp++
		}
	}
	return finishDec(neg, lo, exp)
}

func finishDec(neg bool, mag uint64, exp int64) (dec, bool) {
	if mag == 0 {
		if exp < math.MinInt32 || exp > math.MaxInt32 {
			exp = 0
		}
		return dec{0, int32(exp)}, true
	}
	adj := exp + int64(numDigits(mag)) - 1
	if adj < minAdjExp || adj > maxAdjExp || mag > maxCoef { // callers round to 18 digits
		return dec{}, false
	}
	c := int64(mag)
	if neg {
		c = -c
	}
	return dec{c, int32(exp)}, true // #nosec G115 -- exp ≥ adj−18 ≥ minAdjExp−18 and exp ≤ adj ≤ maxAdjExp
}

// parseDec reads a JSON number or a numeric string ("-12.50", "5E-12", "1e3").
func parseDec(s string) (dec, bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var mag uint64
	var exp int64
	digits := 0
	sawDigit := false
	dropped := false // non-zero digits beyond 18
	roundDigit := -1
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		sawDigit = true
		d := uint64(s[i] - '0')
		if digits < 18 {
			if mag != 0 || d != 0 {
				digits++
			}
			mag = mag*10 + d
		} else {
			exp++
			if roundDigit < 0 {
				roundDigit = int(s[i] - '0')
			} else if d != 0 {
				dropped = true
			}
		}
	}
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			sawDigit = true
			d := uint64(s[i] - '0')
			if digits < 18 {
				if mag != 0 || d != 0 {
					digits++
				}
				mag = mag*10 + d
				exp--
			} else if roundDigit < 0 {
				roundDigit = int(s[i] - '0')
			} else if d != 0 {
				dropped = true
			}
		}
	}
	if !sawDigit {
		return dec{}, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		if i >= len(s) {
			return dec{}, false
		}
		var e int64
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if e < 1e9 {
				e = e*10 + int64(s[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return dec{}, false
	}
	if roundDigit > 5 || (roundDigit == 5 && (dropped || mag%2 == 1)) {
		mag++
		if mag > maxCoef {
			mag /= 10
			exp++
		}
	}
	return finishDec(neg, mag, exp)
}

// decFromInt converts an Int.
func decFromInt(i int64) dec {
	if i >= -maxCoef && i <= maxCoef {
		return dec{i, 0}
	}
	d, _ := makeDec(i < 0, absU(i), 0)
	return d
}

// decFromFloat converts a double-precision result the way Java's BigDecimal.valueOf(double) does
// (through Double.toString): the shortest digits, and a whole number keeps one fractional zero
// (sqrt(9) = 3.0, as the reference's examples show).
func decFromFloat(f float64) (dec, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dec{}, false
	}
	if f == 0 {
		return dec{0, -1}, true
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // d.ddde±xx
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var mag uint64
	n := 0
	k := 0
	for ; k < len(b) && b[k] != 'e'; k++ {
		if b[k] == '.' {
			continue
		}
		mag = mag*10 + uint64(b[k]-'0')
		n++
	}
	e, _ := strconv.Atoi(string(b[k+1:]))
	exp := int64(e) - int64(n-1) // value = mag × 10^exp
	abs := math.Abs(f)
	if abs >= 1e-3 && abs < 1e7 {
		// Double.toString writes these plainly, a whole number with ".0": "3.0", "0.5", "39.06".
		if exp >= 0 {
			for ; exp > 0; exp-- {
				mag *= 10
			}
			mag *= 10
			exp = -1
		}
	} else if n == 1 {
		// Scientific form always has a fractional digit: "1.0E10", "5.0E-4".
		mag *= 10
		exp--
	}
	return finishDec(neg, mag, exp)
}

func (d dec) float() float64 {
	f, err := strconv.ParseFloat(d.String(), 64)
	if err != nil && !isRangeErr(err) {
		return math.NaN()
	}
	return f
}

func (d dec) sign() int {
	switch {
	case d.coef > 0:
		return 1
	case d.coef < 0:
		return -1
	}
	return 0
}

// align brings a and b to the same exponent. ok is false when that overflows the 18 digits; then
// the one with the larger exponent has the larger magnitude (its coefficient, scaled, would exceed
// any 18-digit coefficient).
func align(a, b dec) (int64, int64, int32, bool) {
	if a.exp == b.exp {
		return a.coef, b.coef, a.exp, true
	}
	if a.exp < b.exp {
		y, x, e, ok := align(b, a)
		return x, y, e, ok
	}
	// a.exp > b.exp: scale a up.
	diff := int64(a.exp) - int64(b.exp)
	if a.coef == 0 {
		return 0, b.coef, b.exp, true
	}
	if diff > 18 {
		return 0, 0, 0, false
	}
	hi, lo := bits.Mul64(absU(a.coef), pow10u[diff])
	if hi != 0 || lo > math.MaxInt64 {
		return 0, 0, 0, false
	}
	c := int64(lo)
	if a.coef < 0 {
		c = -c
	}
	return c, b.coef, b.exp, true
}

func (d dec) cmp(o dec) int {
	if ds, os := d.sign(), o.sign(); ds != os {
		if ds < os {
			return -1
		}
		return 1
	}
	if d.coef == 0 {
		return 0
	}
	x, y, _, ok := align(d, o)
	if !ok {
		// The one with the larger exponent has the larger magnitude.
		bigger := 1
		if d.exp < o.exp {
			bigger = -1
		}
		return bigger * d.sign()
	}
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func (d dec) neg() dec { return dec{-d.coef, d.exp} }

func (d dec) add(o dec) (dec, bool) {
	if d.exp < o.exp {
		d, o = o, d
	}
	if o.coef == 0 {
		return d, true
	}
	if d.coef == 0 {
		return o, true
	}
	diff := int64(d.exp) - int64(o.exp)
	if diff > 19 {
		// o is below the 18th digit of d by more than a digit: d is the sum to 18 digits.
		return d, true
	}
	// |d.coef| × 10^diff < 10^37 fits in 128 bits.
	hi, lo := bits.Mul64(absU(d.coef), pow10u[diff])
	dneg, oneg := d.coef < 0, o.coef < 0
	om := absU(o.coef)
	if dneg == oneg {
		var carry uint64
		lo, carry = bits.Add64(lo, om, 0)
		hi += carry
		return makeDec128(dneg, hi, lo, int64(o.exp))
	}
	// Different signs: subtract the smaller magnitude from the larger.
	if hi == 0 && lo < om {
		return makeDec128(oneg, 0, om-lo, int64(o.exp))
	}
	var borrow uint64
	lo, borrow = bits.Sub64(lo, om, 0)
	hi -= borrow
	return makeDec128(dneg, hi, lo, int64(o.exp))
}

func (d dec) sub(o dec) (dec, bool) { return d.add(o.neg()) }

func (d dec) mul(o dec) (dec, bool) {
	hi, lo := bits.Mul64(absU(d.coef), absU(o.coef))
	return makeDec128((d.coef < 0) != (o.coef < 0), hi, lo, int64(d.exp)+int64(o.exp))
}

// quo divides like BigDecimal.divide(divisor, MathContext): an exact quotient keeps the preferred
// exponent (d.exp - o.exp) when it can; otherwise 18 significant digits, rounded half-even.
func (d dec) quo(o dec) (dec, bool) {
	if o.coef == 0 {
		return dec{}, false
	}
	neg := (d.coef < 0) != (o.coef < 0)
	a, b := absU(d.coef), absU(o.coef)
	exp := int64(d.exp) - int64(o.exp)
	if a == 0 {
		return dec{0, int32(max(math.MinInt32, min(math.MaxInt32, exp)))}, true
	}
	q, r := a/b, a%b
	// Long division, one digit at a time, until exact or 19 digits (one for rounding).
	for r != 0 && numDigits(q) < 19 {
		hi, lo := bits.Mul64(r, 10)
		var digit uint64
		digit, r = bits.Div64(hi, lo, b)
		if q > (math.MaxUint64-digit)/10 {
			break
		}
		q = q*10 + digit
		exp--
	}
	if r == 0 {
		return makeDec(neg, q, exp)
	}
	// Inexact: q has a digit beyond 18; r is the sticky remainder.
	last := q % 10
	q /= 10
	exp++
	if last > 5 || (last == 5 && (r != 0 || q%2 == 1)) {
		q++
	}
	return makeDec(neg, q, exp)
}

// rem is the remainder of truncated division (Java's BigDecimal.remainder, the sign of d).
func (d dec) rem(o dec) (dec, bool) {
	if o.coef == 0 {
		return dec{}, false
	}
	x, y, e, ok := align(d, o)
	if !ok {
		if d.exp < o.exp {
			return d, true // |d| < |o|
		}
		f := math.Mod(d.float(), o.float())
		return decFromFloat(f)
	}
	r := x % y
	return makeDec(r < 0, absU(r), int64(e))
}

// trunc drops the fraction beyond places decimal digits (toward zero).
func (d dec) trunc(places int32) dec {
	if d.exp >= -places {
		return d
	}
	drop := int64(-places) - int64(d.exp)
	if drop > 18 {
		return dec{0, -places}
	}
	return dec{d.coef / pow10[drop], -places}
}

// stripZeros removes trailing zeros of the coefficient.
func (d dec) stripZeros() dec {
	if d.coef == 0 {
		return dec{0, 0}
	}
	for d.coef%10 == 0 && d.exp < math.MaxInt32 {
		d.coef /= 10
		d.exp++
	}
	return d
}

// toInt returns the value as an Int when it is a whole number that fits.
func (d dec) toInt() (int64, bool) {
	s := d.stripZeros()
	if s.exp < 0 {
		return 0, false
	}
	if s.exp > 18 {
		return 0, false
	}
	hi, lo := bits.Mul64(absU(s.coef), pow10u[s.exp])
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	if s.coef < 0 {
		return -int64(lo), true
	}
	return int64(lo), true
}

// floorInt, ceilInt, roundInt convert to an Int (round: half away from zero, as the reference's
// examples show). ok is false when the result does not fit.
func (d dec) floorInt() (int64, bool) {
	t := d.trunc(0)
	i, ok := t.toInt()
	if ok && d.coef < 0 && t.cmp(d) != 0 {
		i--
	}
	return i, ok
}

func (d dec) ceilInt() (int64, bool) {
	t := d.trunc(0)
	i, ok := t.toInt()
	if ok && d.coef > 0 && t.cmp(d) != 0 {
		i++
	}
	return i, ok
}

func (d dec) roundInt() (int64, bool) {
	half := dec{5, -1}
	if d.coef < 0 {
		half = half.neg()
	}
	s, ok := d.add(half)
	if !ok {
		return 0, false
	}
	return s.trunc(0).toInt()
}

// String formats like Java's BigDecimal.toString(): plain notation unless the exponent is positive
// or the number is below 1E-6, then scientific ("1.5E+300", "5E-12").
func (d dec) String() string { return string(d.appendTo(nil)) }

func (d dec) appendTo(b []byte) []byte {
	var buf [24]byte
	digits := strconv.AppendUint(buf[:0], absU(d.coef), 10)
	if d.coef < 0 {
		b = append(b, '-')
	}
	scale := -int64(d.exp)
	adjusted := -scale + int64(len(digits)) - 1
	if scale >= 0 && adjusted >= -6 {
		if scale == 0 {
			return append(b, digits...)
		}
		if int64(len(digits)) > scale {
			point := int64(len(digits)) - scale
			b = append(b, digits[:point]...)
			b = append(b, '.')
			return append(b, digits[point:]...)
		}
		b = append(b, '0', '.')
		for k := int64(len(digits)); k < scale; k++ {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	b = append(b, digits[0])
	if len(digits) > 1 {
		b = append(b, '.')
		b = append(b, digits[1:]...)
	}
	b = append(b, 'E')
	if adjusted >= 0 {
		b = append(b, '+')
	}
	return strconv.AppendInt(b, adjusted, 10)
}
