package iotsql

import (
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// msgState is a Message's private cache: the decoded payload and scratch space reused by every
// evaluation of the message.
type msgState struct {
	ptr     *byte // identity of the payload that was decoded
	n       int
	decoded bool
	isJSON  bool
	d       doc
	stack   []value
	now     time.Time
	// In-place storage for the decoded payload of a typical message. It holds no pointers and comes
	// last, so that it costs the garbage collector nothing.
	decodes int   // how many times the payload was decoded (tests check it is at most once)
	rootV   value // the decoded payload's root value
	nodeBuf [48]node
}

// state returns m's cache, resetting it when the payload changed since the last evaluation.
func (m *Message) state() *msgState {
	st := &m.st
	var ptr *byte
	if len(m.Payload) > 0 {
		ptr = unsafe.SliceData(m.Payload) // #nosec G103 -- only the address, to tell whether the payload changed since it was decoded
	}
	if st.decoded && (st.ptr != ptr || st.n != len(m.Payload)) {
		st.decoded = false // a new payload: a new message
		st.now = time.Time{}
	}
	return st
}

// root returns the decoded payload, decoding it on first use.
func (m *Message) root() (value, bool) {
	st := &m.st
	if !st.decoded {
		st.decoded = true
		st.ptr, st.n = nil, len(m.Payload)
		if len(m.Payload) > 0 {
			st.ptr = unsafe.SliceData(m.Payload) // #nosec G103 -- only the address, to tell whether the payload changed since it was decoded
		}
		st.decodes++
		if st.d.nodes == nil {
			st.d.nodes = st.nodeBuf[:0]
		}
		// The document reads the payload in place (no copy): Payload must not change while the
		// Message is being evaluated. Nothing that outlives an evaluation refers to it.
		// JSON text is UTF-8 (RFC 8259): a payload that is not is binary, passed on unchanged by
		// SELECT * and not evaluated otherwise, rather than read with its bad bytes replaced.
		st.isJSON = utf8.Valid(m.Payload) && st.d.parse(unsafe.String(unsafe.SliceData(m.Payload), len(m.Payload))) == nil // #nosec G103 -- read-only view of the payload for the parser; nothing keeps it past the evaluation
		st.rootV = undef
		if st.isJSON {
			st.rootV = st.d.value(0)
		}
	}
	if !st.isJSON {
		return undef, false
	}
	return st.rootV, true
}

type evaluator struct {
	m       *Message
	st      *msgState
	v2      bool
	version Version
	err     error
	// row is the current row of a nested query; payload when !inRow.
	row   value
	inRow bool
	// root caches the decoded payload for this evaluation.
	root     value
	haveRoot bool
	// vars are the SET variables' values, in the order of q.sets.
	vars []value
	sets []setAssign
}

// setVars evaluates the SET clause into the scratch stack and returns the stack mark to restore.
func (ev *evaluator) setVars(sets []setAssign) int {
	st := ev.st
	if st.stack == nil {
		st.stack = make([]value, 0, 8)
	}
	base := len(st.stack)
	ev.sets = sets
	for i, s := range sets {
		st.stack = append(st.stack, undef)
		v := ev.eval(s.x)
		st.stack[base+i] = v
		ev.vars = st.stack[base : base+i+1 : base+i+1]
	}
	return base
}

func (ev *evaluator) releaseVars(base int) {
	clear(ev.st.stack[base:])
	ev.st.stack = ev.st.stack[:base]
	ev.vars = nil
}

// current returns the value names are resolved against.
func (ev *evaluator) current() value {
	if ev.inRow {
		return ev.row
	}
	return ev.payload()
}

func (ev *evaluator) payload() value {
	if ev.haveRoot {
		return ev.root
	}
	v, ok := ev.m.root()
	if !ok {
		if ev.err == nil {
			ev.err = ErrPayloadNotJSON
		}
		return v
	}
	ev.root, ev.haveRoot = v, true
	return v
}

// norm applies the 2016-03-23 rule that whole-number Decimals are Ints to values read from JSON.
func (ev *evaluator) norm(v value) value {
	if v.k == kDec && ev.v2 {
		return decOf(v.dec(), true)
	}
	return v
}

func (ev *evaluator) eval(e expr) value {
	switch x := e.(type) {
	case *litExpr:
		return x.v
	case *accessExpr:
		if x.names != nil {
			cur := ev.current()
			if cur.doc != nil && cur.k == kObj {
				i := cur.doc.lookup(cur.n, x.names)
				if i < 0 {
					return undef
				}
				return ev.norm(cur.doc.value(i))
			}
		}
		var v value
		if x.base == nil {
			v = ev.current()
		} else {
			v = ev.eval(x.base)
		}
		for _, s := range x.segs {
			if s.idx == nil {
				v = v.member(s.name)
				continue
			}
			iv := ev.eval(s.idx)
			if v.k == kArr {
				i, ok := iv.toIntFloor()
				if !ok {
					return undef
				}
				v = v.index(i)
			} else if v.k == kObj && iv.k == kStr {
				v = v.member(iv.s)
			} else {
				return undef
			}
		}
		return ev.norm(v)
	case *starExpr:
		return ev.payload()
	case *unaryExpr:
		v := ev.eval(x.x)
		if x.op == tNot {
			b, ok := v.toBool()
			if !ok {
				return undef
			}
			return boolV(!b)
		}
		return ev.neg(v)
	case *binExpr:
		return ev.binary(x)
	case *callExpr:
		return ev.call(x)
	case *caseExpr:
		return ev.caseOf(x)
	case *objLit:
		o := &object{keys: make([]string, 0, len(x.keys)), vals: make([]value, 0, len(x.keys))}
		for i, k := range x.keys {
			o.set(k, ev.eval(x.vals[i]))
		}
		return objV(o)
	case *arrLit:
		a := make([]value, 0, len(x.elems))
		for _, el := range x.elems {
			a = append(a, ev.eval(el))
		}
		return arrV(a)
	case *subquery:
		return ev.subquery(x.q)
	case *varExpr:
		if x.idx >= 0 {
			if x.idx < len(ev.vars) {
				return ev.vars[x.idx]
			}
			return undef
		}
		for i, s := range ev.sets { // a template rendered for a query
			if s.name == x.name && i < len(ev.vars) {
				return ev.vars[i]
			}
		}
		return undef
	}
	return undef
}

func (ev *evaluator) neg(v value) value {
	switch v.k {
	case kInt:
		if v.i == math.MinInt64 {
			return decOf(decFromInt(v.i).neg(), ev.v2)
		}
		return intV(-v.i)
	case kDec:
		return decOf(v.dec().neg(), ev.v2)
	case kStr:
		if d, ok := parseDecimalString(v.s); ok {
			return decOf(d.neg(), ev.v2)
		}
	}
	return undef
}

func (ev *evaluator) binary(x *binExpr) value {
	switch x.op {
	case tAnd, tOr:
		l, r := ev.eval(x.l), ev.eval(x.r)
		a, ok1 := l.toBool()
		b, ok2 := r.toBool()
		if !ok1 || !ok2 {
			return undef
		}
		if x.op == tAnd {
			return boolV(a && b)
		}
		return boolV(a || b)
	}
	if x.fast != nil {
		if v, ok := ev.fastCompare(x.fast); ok {
			return v
		}
	}
	l := ev.eval(x.l)
	r := ev.eval(x.r)
	switch x.op {
	case tEq:
		eq, ok := equal(l, r)
		if !ok {
			return undef
		}
		return boolV(eq)
	case tNe:
		if l.k == kNull && r.k == kNull {
			return falseV
		}
		eq, ok := equal(l, r)
		if !ok {
			return undef
		}
		return boolV(!eq)
	case tLt, tLe, tGt, tGe:
		return compare(x.op, l, r)
	case tIn:
		return inArray(l, r)
	case tIdent: // CONTAINS
		return contains(l, r)
	case tConcat:
		return concatValues(ev, []value{l, r})
	}
	return arith(x.op, l, r, ev.v2)
}

func compare(op tokKind, l, r value) value {
	var c int
	if l.k == kInt && r.k == kInt {
		switch {
		case l.i < r.i:
			c = -1
		case l.i > r.i:
			c = 1
		}
	} else {
		if (l.k != kInt && l.k != kDec && l.k != kStr) || (r.k != kInt && r.k != kDec && r.k != kStr) {
			return undef
		}
		a, ok1 := l.toDec()
		b, ok2 := r.toDec()
		if !ok1 || !ok2 {
			return undef
		}
		c = a.cmp(b)
	}
	switch op {
	case tLt:
		return boolV(c < 0)
	case tLe:
		return boolV(c <= 0)
	case tGt:
		return boolV(c > 0)
	}
	return boolV(c >= 0)
}

// inArray implements "x IN array": true when an element equals x (by the "=" rules).
func inArray(l, r value) value {
	if l.k == kUndef || r.k != kArr {
		return undef
	}
	it := r.iter()
	for {
		e, ok := it.next()
		if !ok {
			return falseV
		}
		if eq, ok := equal(l, e); ok && eq {
			return trueV
		}
	}
}

// contains implements "array CONTAINS x" and "string CONTAINS string".
func contains(l, r value) value {
	switch {
	case l.k == kStr && r.k == kStr:
		return boolV(strings.Contains(l.s, r.s))
	case l.k == kArr && r.k != kUndef:
		return inArray(r, l)
	}
	return undef
}

// arith implements + - * / % following the reference's operator tables.
func arith(op tokKind, l, r value, v2 bool) value {
	if op == tPlus && (l.k == kStr || r.k == kStr) {
		a, ok1 := l.toStr(v2)
		b, ok2 := r.toStr(v2)
		if !ok1 || !ok2 {
			return undef
		}
		return strV(a + b)
	}
	if l.k == kInt && r.k == kInt {
		a, b := l.i, r.i
		switch op {
		case tPlus:
			s := a + b
			if (s > a) == (b > 0) {
				return intV(s)
			}
		case tMinus:
			s := a - b
			if (s < a) == (b > 0) {
				return intV(s)
			}
		case tStar:
			if a == 0 || b == 0 {
				return intV(0)
			}
			s := a * b
			if s/b == a && !(a == -1 && b == math.MinInt64) && !(b == -1 && a == math.MinInt64) {
				return intV(s)
			}
		case tSlash:
			if b == 0 {
				return undef
			}
			if a == math.MinInt64 && b == -1 {
				break
			}
			return intV(a / b)
		case tPercent:
			if b == 0 {
				return undef
			}
			if b == -1 {
				return intV(0)
			}
			return intV(a % b)
		}
		// Int overflow: the reference's Int has 34 digits; we continue as a Decimal.
		return arithDec(op, decFromInt(a), decFromInt(b), v2)
	}
	ok := func(v value) bool { return v.k == kInt || v.k == kDec || (v.k == kStr && op != tPlus) }
	if !ok(l) || !ok(r) {
		return undef
	}
	a, ok1 := l.toDec()
	b, ok2 := r.toDec()
	if !ok1 || !ok2 {
		return undef
	}
	return arithDec(op, a, b, v2)
}

// arithDec is decimal arithmetic, exact to 18 digits (so 0.1 + 0.2 is 0.3, as with AWS's
// BigDecimal); division by zero and results out of range are Undefined.
func arithDec(op tokKind, a, b dec, v2 bool) value {
	var r dec
	var ok bool
	switch op {
	case tPlus:
		r, ok = a.add(b)
	case tMinus:
		r, ok = a.sub(b)
	case tStar:
		r, ok = a.mul(b)
	case tSlash:
		r, ok = a.quo(b)
	case tPercent:
		r, ok = a.rem(b)
	}
	return decOK(r, ok, v2)
}

func (ev *evaluator) caseOf(x *caseExpr) value {
	if x.subj != nil {
		s := ev.eval(x.subj)
		if s.k == kUndef {
			return undef
		}
		for _, w := range x.whens {
			if eq, ok := equal(s, ev.eval(w.cond)); ok && eq {
				return ev.eval(w.res)
			}
		}
	} else {
		for _, w := range x.whens {
			if b, ok := ev.eval(w.cond).toBool(); ok && b {
				return ev.eval(w.res)
			}
		}
	}
	if x.els != nil {
		return ev.eval(x.els)
	}
	return undef
}

// subquery evaluates a nested SELECT over an array (one result per element whose WHERE holds) or
// over an object (a single result). Names inside resolve against the element.
func (ev *evaluator) subquery(q *selectStmt) value {
	src := ev.eval(q.fromExpr)
	if ev.err != nil {
		return undef
	}
	saveRow, saveIn := ev.row, ev.inRow
	defer func() { ev.row, ev.inRow = saveRow, saveIn }()
	one := func(row value) value {
		ev.row, ev.inRow = row, true
		if q.where != nil {
			if b, ok := ev.eval(q.where).toBool(); !ok || !b {
				return undef
			}
		}
		return ev.project(q)
	}
	switch src.k {
	case kArr:
		out := make([]value, 0, src.length())
		it := src.iter()
		for {
			e, ok := it.next()
			if !ok {
				break
			}
			if r := one(ev.norm(e)); r.defined() {
				out = append(out, r)
			}
		}
		return arrV(out)
	case kObj:
		return one(src)
	}
	return undef
}

// project evaluates the SELECT list against the current row: the value itself for SELECT VALUE,
// an object otherwise.
func (ev *evaluator) project(q *selectStmt) value {
	if q.value {
		return ev.eval(q.items[0].x)
	}
	o := &object{}
	if n := len(q.items); n > 1 || !q.items[0].star {
		o.keys, o.vals = make([]string, 0, n+8), make([]value, 0, n+8)
	}
	for _, it := range q.items {
		if it.star {
			cur := ev.current()
			if cur.k == kObj && len(o.keys) == 0 {
				n := cur.length() + len(q.items)
				o.keys, o.vals = make([]string, 0, n), make([]value, 0, n)
			}
			if cur.k != kObj {
				if len(q.items) == 1 {
					return cur
				}
				continue
			}
			iter := cur.iter()
			for {
				v, ok := iter.next()
				if !ok {
					break
				}
				o.set(iter.key, ev.norm(v))
			}
			continue
		}
		v := ev.eval(it.x)
		if !v.defined() {
			continue
		}
		if len(it.alias) == 0 {
			o.set(it.name, v)
			continue
		}
		setPath(o, it.alias, v)
	}
	return objV(o)
}

// setPath sets a.b.c = v in o, creating (or copying into editable form) the objects on the way.
// A dotted alias builds nested objects: the reference's "SELECT foo.bar AS bar.baz" example.
func setPath(o *object, path []string, v value) {
	for len(path) > 1 {
		cur, ok := o.get(path[0])
		var child *object
		if ok && cur.k == kObj {
			child = editable(cur)
		} else {
			child = &object{}
		}
		o.set(path[0], objV(child))
		o = child
		path = path[1:]
	}
	o.set(path[0], v)
}

// editable returns a new object with the members of v. It always copies: v may be a payload object
// or a constant of the compiled query, which must never change.
func editable(v value) *object {
	o := &object{}
	it := v.iter()
	for {
		e, ok := it.next()
		if !ok {
			return o
		}
		o.set(it.key, e)
	}
}

// output evaluates the top-level SELECT and encodes it.
func (ev *evaluator) output(q *selectStmt) (json.RawMessage, bool) {
	// "SELECT *" of a non-JSON payload passes the bytes through (reference: binary payloads).
	if !q.value && len(q.items) == 1 && q.items[0].star {
		if _, ok := ev.m.root(); !ok {
			return append(json.RawMessage{}, ev.m.Payload...), true
		}
	}
	if q.stream {
		b := ev.writeTop(q, make([]byte, 0, len(ev.m.Payload)+64))
		if ev.err != nil {
			return nil, false
		}
		return b, false
	}
	v := ev.project(q)
	if ev.err != nil {
		return nil, false
	}
	return appendJSON(make([]byte, 0, 128), v, ev.v2), false
}

// writeTop writes the output object of a streamable query directly: the payload's members for a
// leading "*" (an item with the same name replaces a member in place, as the object path does),
// then the remaining items in SELECT order. Undefined values are left out.
func (ev *evaluator) writeTop(q *selectStmt, b []byte) []byte {
	st := ev.st
	if st.stack == nil {
		st.stack = make([]value, 0, 8)
	}
	base := len(st.stack)
	for _, it := range q.items {
		if it.star {
			st.stack = append(st.stack, undef)
			continue
		}
		st.stack = append(st.stack, ev.eval(it.x))
	}
	vals := st.stack[base:]
	b = ev.writeItems(q, vals, b)
	clear(st.stack[base:])
	st.stack = st.stack[:base]
	return b
}

func (ev *evaluator) writeItems(q *selectStmt, vals []value, b []byte) []byte {
	start := 0
	b = append(b, '{')
	first := true
	if q.items[0].star {
		start = 1
		cur := ev.current()
		if cur.k != kObj {
			if len(q.items) == 1 {
				return appendJSON(b[:0], cur, ev.v2)
			}
		} else if cur.doc != nil {
			// The payload itself: walk its members and copy their text.
			d := cur.doc
			kn := cur.n + 1
			for c := int32(0); c < d.nodes[cur.n].count; c++ {
				vn := kn + 1
				next := d.nodes[vn].next
				key := d.str(kn)
				replaced := false
				for j := 1; j < len(q.items); j++ {
					if vals[j].defined() && q.items[j].outName() == key {
						b = appendMember(b, &first, key, vals[j], ev.v2)
						vals[j] = undef // written here, in the member's place
						replaced = true
						break
					}
				}
				if !replaced {
					mark := len(b)
					if !first {
						b = append(b, ',')
					}
					b = d.appendString(b, kn)
					b = append(b, ':')
					start := len(b)
					b = d.appendJSON(b, vn, ev.v2)
					if len(b) == start {
						b = b[:mark] // Undefined (a number out of range)
					} else {
						first = false
					}
				}
				kn = next
			}
		} else {
			it := cur.iter()
			for {
				v, ok := it.next()
				if !ok {
					break
				}
				for j := 1; j < len(q.items); j++ {
					if vals[j].defined() && q.items[j].outName() == it.key {
						v = vals[j]
						vals[j] = undef
						break
					}
				}
				b = appendMember(b, &first, it.key, v, ev.v2)
			}
		}
	}
	for j := start; j < len(q.items); j++ {
		if !vals[j].defined() {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, q.items[j].outName())
		b = append(b, ':')
		b = appendJSON(b, vals[j], ev.v2)
	}
	return append(b, '}')
}

func (ev *evaluator) now() time.Time {
	if !ev.m.Timestamp.IsZero() {
		return ev.m.Timestamp
	}
	if ev.st.now.IsZero() {
		ev.st.now = time.Now()
	}
	return ev.st.now
}

// appendMember writes "key":value (with a leading comma unless first); Undefined writes nothing.
func appendMember(b []byte, first *bool, key string, v value, v2 bool) []byte {
	if !v.defined() {
		return b
	}
	if !*first {
		b = append(b, ',')
	}
	*first = false
	b = appendJSONString(b, key)
	b = append(b, ':')
	return appendJSON(b, v, v2)
}

// fastCompare evaluates "path op literal" directly on the decoded payload: the member's text is
// compared with the literal without building values. ok is false when the member is not a plain
// number or string of the payload; the caller then evaluates the general way (same result).
func (ev *evaluator) fastCompare(f *fastCmp) (value, bool) {
	cur := ev.current()
	if ev.err != nil {
		return undef, true
	}
	if cur.doc == nil || cur.k != kObj {
		return undef, false
	}
	d := cur.doc
	i := d.lookup(cur.n, f.names)
	if i < 0 {
		return undef, true // a missing member is Undefined, and so is any comparison with it
	}
	n := &d.nodes[i]
	text := d.src[n.start:n.end]
	var c int
	switch {
	case f.num && (n.k == kInt || n.k == kDec):
		v, ok := parseDec(text)
		if !ok {
			return undef, false
		}
		c = v.cmp(f.lit)
	case !f.num && n.k == kStr && !n.esc:
		eq := text == f.str
		if f.op == tEq {
			return boolV(eq), true
		}
		return boolV(!eq), true
	case !f.num && (f.op == tEq || f.op == tNe) && n.k != kStr && n.k != kNull:
		// A number, Boolean, array or object never equals a string: mismatched types (but a number
		// out of range is Undefined).
		if n.k == kInt || n.k == kDec {
			if _, ok := parseDec(text); !ok {
				return undef, true
			}
		}
		return boolV(f.op == tNe), true
	default:
		return undef, false
	}
	switch f.op {
	case tEq:
		return boolV(c == 0), true
	case tNe:
		return boolV(c != 0), true
	case tLt:
		return boolV(c < 0), true
	case tLe:
		return boolV(c <= 0), true
	case tGt:
		return boolV(c > 0), true
	}
	return boolV(c >= 0), true
}
