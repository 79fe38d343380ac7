package iotsql

import (
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
	kDec // Decimal: an 18-digit decimal (see decimal.go; the reference has 34 digits).
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

// dec returns a Decimal's value (coefficient in i, exponent in n).
func (v value) dec() dec { return dec{v.i, v.n} }

func (v value) coefNonZero() bool { return v.i != 0 }

// decRaw makes a Decimal from a double-precision result, without the 2016-03-23 whole-number rule.
func decRaw(f float64) value { return decV(f, false) }

// decOf makes a Decimal. With SQL 2016-03-23 a whole-number Decimal is processed as an Int
// (reference: "Data types").
func decOf(d dec, v2 bool) value {
	if v2 {
		if i, ok := d.toInt(); ok {
			return intV(i)
		}
	}
	return value{k: kDec, i: d.coef, n: d.exp}
}

// decOK is decOf for results that may be out of range (Undefined).
func decOK(d dec, ok bool, v2 bool) value {
	if !ok {
		return undef
	}
	return decOf(d, v2)
}

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

// decV makes a Decimal from a double-precision result (the reference: "Decimal (with double
// precision)"), as Java's BigDecimal.valueOf(double) would. NaN and infinities are Undefined.
func decV(f float64, v2 bool) value {
	d, ok := decFromFloat(f)
	return decOK(d, ok, v2)
}

// decDouble is for functions the reference documents as "Decimal (with double precision)".
func decDouble(f float64, v2 bool) value { return decV(f, v2) }

// parseDecimalString implements the reference's string-to-Decimal rule: strings matching
// ^-?\d+(\.\d+)?((?i)E-?\d+)?$ convert; anything else does not.
func parseDecimalString(s string) (dec, bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	d := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == d {
		return dec{}, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return dec{}, false
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
			return dec{}, false
		}
	}
	if i != len(s) {
		return dec{}, false
	}
	return parseDec(s)
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// toDec is the "To decimal" conversion: Int, Decimal and numeric strings convert; anything else
// (Boolean, Null, Undefined, Array, Object) does not.
func (v value) toDec() (dec, bool) {
	switch v.k {
	case kInt:
		return decFromInt(v.i), true
	case kDec:
		return v.dec(), true
	case kStr:
		return parseDecimalString(v.s)
	}
	return dec{}, false
}

// toDecimal is toDec as a float64, for the functions that work in double precision.
func (v value) toDecimal() (float64, bool) {
	switch v.k {
	case kInt:
		return float64(v.i), true
	case kDec, kStr:
		d, ok := v.toDec()
		if !ok {
			return 0, false
		}
		return d.float(), true
	}
	return 0, false
}

// toIntFloor converts like the functions documented as "rounded down to the nearest Int".
func (v value) toIntFloor() (int64, bool) {
	switch v.k {
	case kInt:
		return v.i, true
	case kDec, kStr:
		d, ok := v.toDec()
		if !ok {
			return 0, false
		}
		return d.floorInt()
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
		return string(appendDec(nil, v.dec(), v2)), true
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

// appendDec formats a Decimal as Java's BigDecimal.toString() does (AWS IoT's Decimal is one):
// the scale is kept ("10.0", "2.50"), scientific notation for positive exponents and below 1E-6.
// With 2016-03-23 a whole number prints as an Int.
func appendDec(b []byte, d dec, v2 bool) []byte {
	if v2 {
		if i, ok := d.toInt(); ok {
			return strconv.AppendInt(b, i, 10)
		}
	}
	return d.appendTo(b)
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
		return appendDec(b, v.dec(), v2)
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
		x, _ := a.toDec()
		y, _ := b.toDec()
		return x.cmp(y) == 0, true
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
