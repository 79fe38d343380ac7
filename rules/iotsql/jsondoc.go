package iotsql

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// doc is a decoded JSON payload kept as a flat "tape" of nodes over the payload text. Decoding
// validates the whole document once and records where each value lies; strings and numbers are only
// converted when a query reads them, and containers are never copied. A key lookup walks the
// object's members by skipping whole subtrees (node.next), so reading a few fields of a message costs
// no allocation at all.
type doc struct {
	src   string
	nodes []node
}

type node struct {
	k     kind  // kNull, kBool, kInt, kDec, kStr, kArr, kObj
	esc   bool  // a string with escape sequences
	b     bool  // the value of a Boolean
	start int32 // scalars: the text span (strings without their quotes)
	end   int32
	next  int32 // the index of the node after this value's subtree
	count int32 // containers: number of elements or members
}

// maxJSONDepth bounds nesting so that hostile payloads cannot exhaust the stack.
const maxJSONDepth = 512

// maxJSONBytes keeps text offsets and node indexes within node's int32 fields: every node starts at
// a byte of its own, so a document has no more nodes than bytes.
const maxJSONBytes = math.MaxInt32

var errJSONDepth = errors.New("nested too deeply")

type jsonSyntaxError struct {
	off int
	msg string
}

func (e *jsonSyntaxError) Error() string { return "offset " + strconv.Itoa(e.off) + ": " + e.msg }

// parse decodes src into d, reusing d's node storage.
func (d *doc) parse(src string) error {
	d.src = src
	if cap(d.nodes) == 0 {
		d.nodes = make([]node, 0, len(src)/8+4) // about one node per 8 bytes of typical JSON
	}
	d.nodes = d.nodes[:0]
	if len(src) > maxJSONBytes {
		return &jsonSyntaxError{off: maxJSONBytes, msg: "document larger than 2 GiB"}
	}
	p := jsonParser{d: d, s: src}
	p.ws()
	if err := p.value(0); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.s) {
		return p.fail("unexpected data after the JSON value")
	}
	return nil
}

type jsonParser struct {
	d *doc
	s string
	i int
}

func (p *jsonParser) fail(msg string) error { return &jsonSyntaxError{off: p.i, msg: msg} }

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) add(n node) int32 {
	p.d.nodes = append(p.d.nodes, n)
	return i32(len(p.d.nodes) - 1)
}

// i32 converts a text offset or a node index for node's fields.
func i32(i int) int32 {
	return int32(i) // #nosec G115 -- 0 ≤ i ≤ maxJSONBytes: parse refuses longer documents, and there are no more nodes than bytes
}

func (p *jsonParser) value(depth int) error {
	if depth > maxJSONDepth {
		return errJSONDepth
	}
	if p.i >= len(p.s) {
		return p.fail("unexpected end of JSON input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.lit("true", node{k: kBool, b: true})
	case c == 'f':
		return p.lit("false", node{k: kBool})
	case c == 'n':
		return p.lit("null", node{k: kNull})
	}
	return p.fail("invalid character " + strconv.QuoteRune(rune(p.s[p.i])))
}

func (p *jsonParser) lit(word string, n node) error {
	if len(p.s)-p.i < len(word) || p.s[p.i:p.i+len(word)] != word {
		return p.fail("invalid literal")
	}
	p.i += len(word)
	idx := p.add(n)
	p.d.nodes[idx].next = idx + 1
	return nil
}

func (p *jsonParser) object(depth int) error {
	idx := p.add(node{k: kObj})
	p.i++
	p.ws()
	var count int32
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
	} else {
		for {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return p.fail("expected a string key")
			}
			if err := p.str(); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return p.fail("expected ':' after an object key")
			}
			p.i++
			p.ws()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			count++
			p.ws()
			if p.i >= len(p.s) {
				return p.fail("unexpected end of JSON input")
			}
			if p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.s[p.i] == '}' {
				p.i++
				break
			}
			return p.fail("expected ',' or '}' in an object")
		}
	}
	n := &p.d.nodes[idx]
	n.count = count
	n.next = i32(len(p.d.nodes))
	return nil
}

func (p *jsonParser) array(depth int) error {
	idx := p.add(node{k: kArr})
	p.i++
	p.ws()
	var count int32
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
	} else {
		for {
			p.ws()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			count++
			p.ws()
			if p.i >= len(p.s) {
				return p.fail("unexpected end of JSON input")
			}
			if p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.s[p.i] == ']' {
				p.i++
				break
			}
			return p.fail("expected ',' or ']' in an array")
		}
	}
	n := &p.d.nodes[idx]
	n.count = count
	n.next = i32(len(p.d.nodes))
	return nil
}

func (p *jsonParser) str() error {
	p.i++ // opening quote
	start := p.i
	esc := false
	for {
		if p.i >= len(p.s) {
			return p.fail("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			idx := p.add(node{k: kStr, esc: esc, start: i32(start), end: i32(p.i)})
			p.d.nodes[idx].next = idx + 1
			p.i++
			return nil
		case c == '\\':
			esc = true
			p.i++
			if p.i >= len(p.s) {
				return p.fail("unterminated string")
			}
			switch p.s[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.s)-p.i < 5 {
					return p.fail("invalid \\u escape")
				}
				for _, h := range []byte(p.s[p.i+1 : p.i+5]) {
					if unhex(h) < 0 {
						return p.fail("invalid \\u escape")
					}
				}
				p.i += 5
			default:
				return p.fail("invalid escape in string")
			}
		case c < 0x20:
			return p.fail("control character in string")
		default:
			p.i++
		}
	}
}

func (p *jsonParser) number() error {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.s) {
		return p.fail("invalid number")
	}
	switch {
	case p.s[p.i] == '0':
		p.i++
	case p.s[p.i] >= '1' && p.s[p.i] <= '9':
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
	default:
		return p.fail("invalid number")
	}
	k := kInt
	if p.i < len(p.s) && p.s[p.i] == '.' {
		k = kDec
		p.i++
		d := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == d {
			return p.fail("invalid number")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		k = kDec
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		d := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == d {
			return p.fail("invalid number")
		}
	}
	idx := p.add(node{k: k, start: i32(start), end: i32(p.i)})
	p.d.nodes[idx].next = idx + 1
	return nil
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

// str returns the text of string node i.
func (d *doc) str(i int32) string {
	n := &d.nodes[i]
	s := d.src[n.start:n.end]
	if !n.esc {
		return s
	}
	return unescapeJSON(s)
}

// strEquals compares string node i with key without unescaping when it has no escapes.
func (d *doc) strEquals(i int32, key string) bool {
	n := &d.nodes[i]
	if !n.esc {
		return d.src[n.start:n.end] == key
	}
	return unescapeJSON(d.src[n.start:n.end]) == key
}

func unescapeJSON(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			b = append(b, s[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(s[i+1 : i+5])
			i += 4 // i is on the last hex digit
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+7 <= len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2 = hex4(s[i+3 : i+7])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
		}
		i++
	}
	return string(b)
}

func hex4(s string) rune {
	var v rune
	for i := 0; i < 4; i++ {
		v = v<<4 | unhex(s[i])
	}
	return v
}

// value converts node i into a SQL value. Numbers are converted here, on demand.
func (d *doc) value(i int32) value {
	n := &d.nodes[i]
	switch n.k {
	case kNull:
		return nullV
	case kBool:
		return boolV(n.b)
	case kStr:
		return strV(d.str(i))
	case kInt:
		text := d.src[n.start:n.end]
		if v, err := strconv.ParseInt(text, 10, 64); err == nil {
			return intV(v)
		}
		// Beyond int64: a Decimal (the reference's Int has 34 digits; see docs).
		dv, ok := parseDec(text)
		return decOK(dv, ok, false)
	case kDec:
		// Beyond the reference's range (1E-999 to 9.999E999) a number is Undefined.
		dv, ok := parseDec(d.src[n.start:n.end])
		return decOK(dv, ok, false)
	case kArr, kObj:
		return value{k: n.k, doc: d, n: i}
	}
	return undef
}

// member finds key in object node i.
func (d *doc) member(i int32, key string) value {
	n := &d.nodes[i]
	j := i + 1
	for c := int32(0); c < n.count; c++ {
		if d.strEquals(j, key) {
			return d.value(j + 1)
		}
		j = d.nodes[j+1].next
	}
	return undef
}

// index finds element k of array node i.
func (d *doc) index(i int32, k int64) value {
	n := &d.nodes[i]
	if k >= int64(n.count) {
		return undef
	}
	j := i + 1
	for c := int64(0); c < k; c++ {
		j = d.nodes[j].next
	}
	return d.value(j)
}

// appendJSON writes the subtree at node i, copying the payload's own text for strings and numbers
// whenever that text is already what the value would be serialized as (the common case), and
// converting otherwise. Whitespace is dropped.
func (d *doc) appendJSON(b []byte, i int32, v2 bool) []byte {
	n := &d.nodes[i]
	switch n.k {
	case kObj, kArr:
		open, close := byte('['), byte(']')
		if n.k == kObj {
			open, close = '{', '}'
		}
		b = append(b, open)
		j := i + 1
		first := true
		for c := int32(0); c < n.count; c++ {
			mark := len(b)
			if !first {
				b = append(b, ',')
			}
			if n.k == kObj {
				b = d.appendString(b, j)
				b = append(b, ':')
				j++
			}
			start := len(b)
			b = d.appendJSON(b, j, v2)
			if len(b) == start {
				b = b[:mark] // an Undefined value (a number out of range) is left out
			} else {
				first = false
			}
			j = d.nodes[j].next
		}
		return append(b, close)
	case kStr:
		return d.appendString(b, i)
	case kInt:
		text := d.src[n.start:n.end]
		if text != "-0" && len(text) <= 18 {
			return append(b, text...)
		}
	case kDec:
		text := d.src[n.start:n.end]
		if canonicalDecimal(text, v2) {
			return append(b, text...)
		}
	case kNull:
		return append(b, "null"...)
	case kBool:
		if n.b {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	}
	return appendJSON(b, d.value(i), v2)
}

func (d *doc) appendString(b []byte, i int32) []byte {
	n := &d.nodes[i]
	text := d.src[n.start:n.end]
	if !n.esc && utf8.ValidString(text) {
		// Valid JSON strings without escapes hold no '"', '\\' or control characters.
		b = append(b, '"')
		b = append(b, text...)
		return append(b, '"')
	}
	return appendJSONString(b, d.str(i))
}

// canonicalDecimal reports whether text (a JSON number with a fraction or exponent) is exactly what
// appendDec prints for its value: no exponent, not a negative zero, at most 18 significant digits,
// and not below 1E-6 (BigDecimal's toString switches to scientific notation there); with SQL
// 2016-03-23 a whole number prints as an Int, so "10.0" is not canonical there.
func canonicalDecimal(text string, v2 bool) bool {
	sig := 0          // significant digits
	leading := true   // still in leading zeros
	fracZeros := true // the fraction is all zeros
	nonZero := false  // any non-zero digit
	scale, point := 0, false
	for k := 0; k < len(text); k++ {
		c := text[k]
		switch {
		case c == '.':
			point = true
		case c == 'e' || c == 'E':
			return false
		case c >= '0' && c <= '9':
			if point {
				scale++
				if c != '0' {
					fracZeros = false
				}
			}
			if c != '0' {
				leading, nonZero = false, true
			}
			if !leading {
				sig++
			}
		}
	}
	if !point || sig > 18 {
		return false
	}
	if !nonZero {
		// Zero: "0.0" prints as itself; "-0.0" loses its sign; "0.0000000" becomes "0E-7".
		return !v2 && text[0] != '-' && scale <= 6
	}
	if v2 && fracZeros {
		return false
	}
	adjusted := sig - 1 - scale
	return adjusted >= -6
}

// lookup follows a path of member names from node i; -1 when a member is missing or a value on
// the way is not an object.
func (d *doc) lookup(i int32, names []string) int32 {
	for _, name := range names {
		n := &d.nodes[i]
		if n.k != kObj {
			return -1
		}
		j := i + 1
		found := false
		for c := int32(0); c < n.count; c++ {
			kn := &d.nodes[j]
			if kn.esc {
				if unescapeJSON(d.src[kn.start:kn.end]) == name {
					found = true
				}
			} else if int(kn.end-kn.start) == len(name) && d.src[kn.start:kn.end] == name {
				found = true
			}
			if found {
				i = j + 1
				break
			}
			j = d.nodes[j+1].next
		}
		if !found {
			return -1
		}
	}
	return i
}
