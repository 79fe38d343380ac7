package iotsql

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// kind is the type of a SQL value, as in the reference's "Data types" page.
type kind uint8

const (
	kUndef kind = iota // Undefined: not a value; dropped from output.
	kNull
	kBool
	kInt
	kDec // Decimal: held as float64 (see docs/iotsql.md: not 34-digit precision).
	kStr
	kArr
	kObj
)

func (k kind) String() string {
	switch k {
	case kUndef:
		return "Undefined"
	case kNull:
		return "Null"
	case kBool:
		return "Boolean"
	case kInt:
		return "Int"
	case kDec:
		return "Decimal"
	case kStr:
		return "String"
	case kArr:
		return "Array"
	case kObj:
		return "Object"
	}
	return "?"
}

// value is one SQL value. Arrays and objects either point into a decoded payload (doc, n) — so that
// reading a message never copies it — or are built by the query (arr, obj).
//
// The struct is kept small (48 bytes) because values are passed and returned by value everywhere.
type value struct {
	k   kind
	b   bool
	n   int32  // payload arrays and objects: the node in doc
	i   int64  // an Int, or the bits of a Decimal's float64
	s   string // a String
	doc *doc
	obj *object // built arrays (vals only) and objects
}

// object is an ordered object or (keys == nil) an array built by a query.
type object struct {
	keys []string
	vals []value
}

// f returns a Decimal's value.
func (v value) f() float64 { return math.Float64frombits(uint64(v.i)) }

// decRaw makes a Decimal without the 2016-03-23 whole-number rule.
func decRaw(f float64) value { return value{k: kDec, i: int64(math.Float64bits(f))} }

func (o *object) get(k string) (value, bool) {
	for i, kk := range o.keys {
		if kk == k {
			return o.vals[i], true
		}
	}
	return value{}, false
}

// set replaces an existing key in place (keeping its position) or appends it.
func (o *object) set(k string, v value) {
	for i, kk := range o.keys {
		if kk == k {
			o.vals[i] = v
			return
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

var (
	undef    = value{}
	nullV    = value{k: kNull}
	trueV    = value{k: kBool, b: true}
	falseV   = value{k: kBool}
	emptyStr = value{k: kStr}
)

func boolV(b bool) value      { return value{k: kBool, b: b} }
func intV(i int64) value      { return value{k: kInt, i: i} }
func strV(s string) value     { return value{k: kStr, s: s} }
func arrV(a []value) value    { return value{k: kArr, obj: &object{vals: a}} }
func objV(o *object) value    { return value{k: kObj, obj: o} }
func (v value) defined() bool { return v.k != kUndef }

// decV makes a Decimal. NaN and infinities are not values in the reference, so they are Undefined.
// With SQL 2016-03-23 a whole-number Decimal is processed as an Int (reference: "Data types").
func decV(f float64, v2 bool) value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return undef
	}
	if v2 && f == math.Trunc(f) && f >= -9.007199254740992e15 && f <= 9.007199254740992e15 {
		return intV(int64(f))
	}
	return decRaw(f)
}

// decDouble is for functions the reference documents as "Decimal (with double precision)".
func decDouble(f float64, v2 bool) value { return decV(f, v2) }

// number returns the value as a float64 when it is an Int or a Decimal.
func (v value) number() (float64, bool) {
	switch v.k {
	case kInt:
		return float64(v.i), true
	case kDec:
		return v.f(), true
	}
	return 0, false
}

// parseDecimalString implements the reference's string-to-Decimal rule: strings matching
// ^-?\d+(\.\d+)?((?i)E-?\d+)?$ convert; anything else does not.
func parseDecimalString(s string) (float64, bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	d := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == d {
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && s[i] == '-' {
			i++
		}
		d = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return 0, false
	}
	if math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// toDecimal is the "To decimal" conversion: Int, Decimal and numeric strings convert; Null stays Null
// (reported by ok=false, isNull=true); everything else is Undefined.
func (v value) toDecimal() (f float64, ok bool) {
	switch v.k {
	case kInt:
		return float64(v.i), true
	case kDec:
		return v.f(), true
	case kStr:
		return parseDecimalString(v.s)
	}
	return 0, false
}

// toIntFloor converts like the functions documented as "rounded down to the nearest Int".
func (v value) toIntFloor() (int64, bool) {
	switch v.k {
	case kInt:
		return v.i, true
	case kDec, kStr:
		f, ok := v.toDecimal()
		if !ok {
			return 0, false
		}
		f = math.Floor(f)
		if f < -9.2e18 || f > 9.2e18 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

// toBool is the "To Boolean" conversion: Booleans and the strings "true"/"false" (any case).
func (v value) toBool() (bool, bool) {
	switch v.k {
	case kBool:
		return v.b, true
	case kStr:
		if strings.EqualFold(v.s, "true") {
			return true, true
		}
		if strings.EqualFold(v.s, "false") {
			return false, true
		}
	}
	return false, false
}

// toStr is the "To string" conversion. Null and Undefined do not convert.
func (v value) toStr(v2 bool) (string, bool) {
	switch v.k {
	case kStr:
		return v.s, true
	case kInt:
		return strconv.FormatInt(v.i, 10), true
	case kDec:
		return string(appendDec(nil, v.f(), v2)), true
	case kBool:
		if v.b {
			return "true", true
		}
		return "false", true
	case kArr, kObj:
		return string(appendJSON(nil, v, v2)), true
	}
	return "", false
}

// appendDec formats a Decimal. Whole numbers keep a ".0" so that they stay distinguishable from Ints
// (the reference's examples: sqrt(9) = 3.0, power(2, 5) = 32.0).
func appendDec(b []byte, f float64, v2 bool) []byte {
	if v2 && f == math.Trunc(f) && math.Abs(f) <= 9.007199254740992e15 {
		return strconv.AppendInt(b, int64(f), 10)
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(b, f, 'E', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, '.', '0')
}

// appendJSON serializes v as JSON. Undefined members of objects and arrays are left out, as the
// reference says for objects; for arrays the same rule is applied (documented choice).
func appendJSON(b []byte, v value, v2 bool) []byte { return appendJSONMode(b, v, v2, true) }

// appendJSONMode is appendJSON; raw=false never copies payload text (tests compare both ways).
func appendJSONMode(b []byte, v value, v2, raw bool) []byte {
	switch v.k {
	case kUndef:
		return b
	case kNull:
		return append(b, "null"...)
	case kBool:
		if v.b {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case kInt:
		return strconv.AppendInt(b, v.i, 10)
	case kDec:
		return appendDec(b, v.f(), v2)
	case kStr:
		return appendJSONString(b, v.s)
	case kArr:
		if v.doc != nil && raw {
			return v.doc.appendJSON(b, v.n, v2)
		}
		b = append(b, '[')
		first := true
		it := v.iter()
		for {
			e, ok := it.next()
			if !ok {
				break
			}
			if !e.defined() {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONMode(b, e, v2, raw)
		}
		return append(b, ']')
	case kObj:
		if v.doc != nil && raw {
			return v.doc.appendJSON(b, v.n, v2)
		}
		b = append(b, '{')
		first := true
		it := v.iter()
		for {
			e, ok := it.next()
			if !ok {
				break
			}
			if !e.defined() {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, it.key)
			b = append(b, ':')
			b = appendJSONMode(b, e, v2, raw)
		}
		return append(b, '}')
	}
	return b
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// iterator walks the elements of an array or the members of an object, whichever representation
// the value uses. For objects, key holds the current member's key.
type iterator struct {
	v   value
	idx int   // built values: next index
	nd  int32 // payload values: next node
	rem int32 // payload values: members left
	key string
}

func (v value) iter() iterator {
	it := iterator{v: v}
	if v.doc != nil {
		it.nd = v.n + 1
		it.rem = v.doc.nodes[v.n].count
	}
	return it
}

func (it *iterator) next() (value, bool) {
	v := it.v
	if v.doc != nil {
		if it.rem <= 0 {
			return undef, false
		}
		it.rem--
		d := v.doc
		if v.k == kObj {
			it.key = d.str(it.nd)
			it.nd = d.nodes[it.nd].next
		}
		e := d.value(it.nd)
		it.nd = d.nodes[it.nd].next
		return e, true
	}
	switch v.k {
	case kArr:
		if v.obj == nil || it.idx >= len(v.obj.vals) {
			return undef, false
		}
		it.idx++
		return v.obj.vals[it.idx-1], true
	case kObj:
		if v.obj == nil || it.idx >= len(v.obj.keys) {
			return undef, false
		}
		it.idx++
		it.key = v.obj.keys[it.idx-1]
		return v.obj.vals[it.idx-1], true
	}
	return undef, false
}

// length is the number of elements of an array or members of an object.
func (v value) length() int {
	if v.doc != nil {
		return int(v.doc.nodes[v.n].count)
	}
	switch v.k {
	case kArr, kObj:
		if v.obj == nil {
			return 0
		}
		return len(v.obj.vals)
	}
	return 0
}

// member looks up key in an object; Undefined when absent or when v is not an object.
func (v value) member(key string) value {
	if v.k != kObj {
		return undef
	}
	if v.doc != nil {
		return v.doc.member(v.n, key)
	}
	if v.obj == nil {
		return undef
	}
	if e, ok := v.obj.get(key); ok {
		return e
	}
	return undef
}

// index returns the i-th element of an array; Undefined when out of bounds.
func (v value) index(i int64) value {
	if v.k != kArr || i < 0 {
		return undef
	}
	if v.doc != nil {
		return v.doc.index(v.n, i)
	}
	if v.obj == nil || i >= int64(len(v.obj.vals)) {
		return undef
	}
	return v.obj.vals[i]
}

// equal implements the "=" table. The second result is false when the outcome is Undefined.
func equal(a, b value) (bool, bool) {
	if a.k == kUndef || b.k == kUndef {
		return false, false
	}
	switch {
	case a.k == kInt && b.k == kInt:
		return a.i == b.i, true
	case (a.k == kInt || a.k == kDec) && (b.k == kInt || b.k == kDec):
		x, _ := a.number()
		y, _ := b.number()
		return x == y, true
	case a.k != b.k:
		return false, true
	}
	switch a.k {
	case kNull:
		return true, true
	case kBool:
		return a.b == b.b, true
	case kStr:
		return a.s == b.s, true
	case kArr:
		if a.length() != b.length() {
			return false, true
		}
		ia, ib := a.iter(), b.iter()
		for {
			x, ok := ia.next()
			if !ok {
				return true, true
			}
			y, _ := ib.next()
			if eq, ok := equal(x, y); !ok || !eq {
				if !ok && x.k == kUndef && y.k == kUndef {
					continue
				}
				return false, true
			}
		}
	case kObj:
		if a.length() != b.length() {
			return false, true
		}
		ia := a.iter()
		for {
			x, ok := ia.next()
			if !ok {
				return true, true
			}
			y := b.member(ia.key)
			if eq, ok := equal(x, y); !ok || !eq {
				return false, true
			}
		}
	}
	return false, true
}
