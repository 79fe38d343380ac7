package iotsql

import (
	"crypto/md5" // #nosec G501 -- for the AWS IoT SQL function md5(), not for security
	"crypto/rand"
	"crypto/sha1" // #nosec G505 -- for the AWS IoT SQL function sha1(), not for security
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	mrand "math/rand/v2"
	"regexp"
	"strings"
	"unicode/utf8"
)

type funcID uint8

const (
	fAbs funcID = iota + 1
	fAccountID
	fAcos
	fAsin
	fAtan
	fAtan2
	fBitAnd
	fBitOr
	fBitXor
	fBitNot
	fCast
	fCeil
	fChr
	fClientID
	fConcat
	fCos
	fCosh
	fDecode
	fEncode
	fEndsWith
	fExp
	fFloor
	fGet
	fGetOrDefault
	fHash
	fIndexOf
	fIsNull
	fIsUndefined
	fLength
	fLn
	fLog
	fLower
	fLpad
	fLtrim
	fMod
	fNanvl
	fNewUUID
	fNumBytes
	fParseTime
	fPower
	fPrincipal
	fRand
	fRegexpMatches
	fRegexpReplace
	fRegexpSubstr
	fReplace
	fRpad
	fRound
	fRtrim
	fSign
	fSin
	fSinh
	fSqlVersion
	fSqrt
	fStartsWith
	fSubstring
	fTan
	fTanh
	fTimeToEpoch
	fTimestamp
	fTopic
	fTraceID
	fTransform
	fTrim
	fTrunc
	fUpper
	fExternal // needs AWS or data a local broker does not have: Undefined locally
)

type funcInfo struct {
	id         funcID
	min, max   int  // number of arguments; max -1: any
	v2only     bool // "Supported by SQL version 2016-03-23 and later"
	external   bool // listed by Query.Unsupported()
	literalArg int  // index of an argument that must be a literal string, or -1
	note       string
}

func (f *funcInfo) arity() string {
	switch {
	case f.min == f.max && f.min == 1:
		return "1 argument"
	case f.min == f.max:
		return fmt.Sprintf("%d arguments", f.min)
	case f.max < 0:
		return fmt.Sprintf("at least %d arguments", f.min)
	}
	return fmt.Sprintf("%d to %d arguments", f.min, f.max)
}

// funcTable lists every function of the reference's "Functions" page.
var funcTable = map[string]*funcInfo{}

func init() {
	add := func(name string, id funcID, min, max int, v2 bool) *funcInfo {
		f := &funcInfo{id: id, min: min, max: max, v2only: v2, literalArg: -1}
		funcTable[name] = f
		return f
	}
	ext := func(name string, min, max int, v2 bool, note string) {
		f := add(name, fExternal, min, max, v2)
		f.external = true
		f.note = note
	}
	add("abs", fAbs, 1, 1, false)
	add("accountid", fAccountID, 0, 0, false)
	add("acos", fAcos, 1, 1, false)
	add("asin", fAsin, 1, 1, false)
	add("atan", fAtan, 1, 1, false)
	add("atan2", fAtan2, 2, 2, false)
	add("bitand", fBitAnd, 2, 2, false)
	add("bitor", fBitOr, 2, 2, false)
	add("bitxor", fBitXor, 2, 2, false)
	add("bitnot", fBitNot, 1, 1, false)
	add("cast", fCast, 1, 1, false)
	add("ceil", fCeil, 1, 1, false)
	add("chr", fChr, 1, 1, false)
	add("clientid", fClientID, 0, 0, false)
	add("concat", fConcat, 0, -1, false)
	add("cos", fCos, 1, 1, false)
	add("cosh", fCosh, 1, 1, false)
	add("decode", fDecode, 2, -1, true).literalArg = 1
	add("encode", fEncode, 2, 2, true).literalArg = 1
	add("endswith", fEndsWith, 2, 2, false)
	add("exp", fExp, 1, 1, false)
	add("floor", fFloor, 1, 1, false)
	add("get", fGet, 2, 2, false)
	add("get_or_default", fGetOrDefault, 2, 2, false)
	for _, h := range []string{"md2", "md5", "sha1", "sha224", "sha256", "sha384", "sha512"} {
		add(h, fHash, 1, 1, false)
	}
	add("indexof", fIndexOf, 2, 2, true)
	add("isnull", fIsNull, 1, 1, false)
	add("isundefined", fIsUndefined, 1, 1, true)
	add("length", fLength, 1, 1, true)
	add("ln", fLn, 1, 1, false)
	add("log", fLog, 1, 1, false)
	add("lower", fLower, 1, 1, false)
	add("lpad", fLpad, 2, 2, false)
	add("ltrim", fLtrim, 1, 1, false)
	add("mod", fMod, 2, 2, false)
	add("nanvl", fNanvl, 2, 2, false)
	add("newuuid", fNewUUID, 0, 0, false)
	add("numbytes", fNumBytes, 1, 1, true)
	add("parse_time", fParseTime, 2, 3, true)
	add("power", fPower, 2, 2, false)
	add("principal", fPrincipal, 0, 0, false)
	add("rand", fRand, 0, 0, false)
	add("regexp_matches", fRegexpMatches, 2, 2, false)
	add("regexp_replace", fRegexpReplace, 3, 3, false)
	add("regexp_substr", fRegexpSubstr, 2, 2, false)
	add("remainder", fMod, 2, 2, false)
	add("replace", fReplace, 3, 3, false)
	add("rpad", fRpad, 2, 2, false)
	add("round", fRound, 1, 1, false)
	add("rtrim", fRtrim, 1, 1, false)
	add("sign", fSign, 1, 1, false)
	add("sin", fSin, 1, 1, false)
	add("sinh", fSinh, 1, 1, false)
	add("sql_version", fSqlVersion, 0, 0, false)
	add("sqrt", fSqrt, 1, 1, false)
	add("startswith", fStartsWith, 2, 2, false)
	add("substring", fSubstring, 2, 3, false)
	add("tan", fTan, 1, 1, false)
	add("tanh", fTanh, 1, 1, false)
	add("time_to_epoch", fTimeToEpoch, 2, 2, true)
	add("timestamp", fTimestamp, 0, 0, false)
	add("topic", fTopic, 0, 1, false)
	add("traceid", fTraceID, 0, 0, false)
	add("transform", fTransform, 3, 3, true)
	add("trim", fTrim, 1, 1, false)
	add("trunc", fTrunc, 2, 2, false)
	add("upper", fUpper, 1, 1, false)

	ext("aws_lambda", 2, 2, false, "calls AWS Lambda")
	ext("get_dynamodb", 4, 6, true, "reads DynamoDB")
	ext("get_thing_shadow", 2, 3, true, "reads the Device Shadow service")
	ext("get_secret", 3, 4, false, "reads AWS Secrets Manager")
	ext("get_registry_data", 3, 3, false, "reads the AWS IoT thing registry")
	ext("machinelearning_predict", 3, 3, false, "calls Amazon Machine Learning")
	ext("get_mqtt_property", 1, 1, false, "MQTT 5 properties are not carried by iotsql.Message")
	ext("get_user_properties", 0, 1, false, "MQTT 5 user properties are not carried by iotsql.Message")
	ext("sourceip", 0, 0, false, "the publisher's IP address is not carried by iotsql.Message")
}

// call evaluates a function call. Arguments are evaluated into the message's scratch stack, so that
// calls allocate nothing unless the function builds a new string, array or object.
func (ev *evaluator) call(c *callExpr) value {
	st := ev.st
	if st.stack == nil {
		st.stack = make([]value, 0, 8)
	}
	base := len(st.stack)
	for _, a := range c.args {
		if _, star := a.(*starExpr); star && (c.fn.id == fEncode || c.fn.id == fDecode) {
			st.stack = append(st.stack, undef) // handled by the function: the raw payload
			continue
		}
		st.stack = append(st.stack, ev.eval(a))
	}
	args := st.stack[base:len(st.stack):len(st.stack)]
	r := ev.apply(c, args)
	clear(st.stack[base:])
	st.stack = st.stack[:base]
	return r
}

func (ev *evaluator) apply(c *callExpr, a []value) value {
	v2 := ev.v2
	switch c.fn.id {
	case fAbs:
		switch a[0].k {
		case kInt:
			if a[0].i == math.MinInt64 {
				return decOf(decFromInt(a[0].i).neg(), v2)
			}
			if a[0].i < 0 {
				return intV(-a[0].i)
			}
			return a[0]
		case kDec, kStr:
			if d, ok := a[0].toDec(); ok {
				if d.coef < 0 {
					d = d.neg()
				}
				return decOf(d, v2)
			}
		}
		return undef
	case fAccountID:
		return nonEmpty(ev.m.AccountID)
	case fAcos:
		return mathFn(a[0], math.Acos, v2)
	case fAsin:
		return mathFn(a[0], math.Asin, v2)
	case fAtan:
		return mathFn(a[0], math.Atan, v2)
	case fAtan2:
		y, ok1 := numArg(a[0])
		x, ok2 := numArg(a[1])
		if !ok1 || !ok2 {
			return undef
		}
		return decDouble(math.Atan2(y, x), v2)
	case fBitAnd, fBitOr, fBitXor:
		x, ok1 := intArg(a[0])
		y, ok2 := intArg(a[1])
		if !ok1 || !ok2 {
			return undef
		}
		switch c.fn.id {
		case fBitAnd:
			return intV(x & y)
		case fBitOr:
			return intV(x | y)
		}
		return intV(x ^ y)
	case fBitNot:
		x, ok := intArg(a[0])
		if !ok {
			return undef
		}
		return intV(^x)
	case fCast:
		return castTo(a[0], c.cast, v2)
	case fCeil, fFloor, fRound:
		return roundFn(c.fn.id, a[0])
	case fChr:
		x, ok := intArg(a[0])
		if !ok || x < 0 || x > 127 {
			return undef
		}
		return strV(string(rune(x)))
	case fClientID:
		if ev.m.ClientID == "" {
			return strV("n/a")
		}
		return strV(ev.m.ClientID)
	case fConcat:
		return concatValues(ev, a)
	case fCos:
		return mathFn(a[0], math.Cos, v2)
	case fCosh:
		return mathFn(a[0], math.Cosh, v2)
	case fDecode:
		return ev.decode(c, a)
	case fEncode:
		var data string
		if _, star := c.args[0].(*starExpr); star {
			data = string(ev.m.Payload)
		} else {
			s, ok := a[0].toStr(v2)
			if !ok {
				return undef
			}
			data = s
		}
		return strV(base64.StdEncoding.EncodeToString([]byte(data)))
	case fEndsWith, fStartsWith:
		s, ok1 := a[0].toStr(v2)
		t, ok2 := a[1].toStr(v2)
		if !ok1 || !ok2 {
			return undef
		}
		if c.fn.id == fEndsWith {
			return boolV(strings.HasSuffix(s, t))
		}
		return boolV(strings.HasPrefix(s, t))
	case fExp:
		return mathFn(a[0], math.Exp, v2)
	case fGet:
		return getFn(a[0], a[1], v2)
	case fGetOrDefault:
		if a[0].k == kUndef || a[0].k == kNull {
			return a[1]
		}
		return a[0]
	case fHash:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		return strV(hashHex(c.name, s))
	case fIndexOf:
		s, ok1 := a[0].toStr(v2)
		t, ok2 := a[1].toStr(v2)
		if !ok1 || !ok2 {
			return undef
		}
		i := strings.Index(s, t)
		if i < 0 {
			return intV(-1)
		}
		return intV(int64(utf8.RuneCountInString(s[:i])))
	case fIsNull:
		return boolV(a[0].k == kNull)
	case fIsUndefined:
		return boolV(a[0].k == kUndef)
	case fLength:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		return intV(int64(utf8.RuneCountInString(s)))
	case fLn:
		return mathFn(a[0], math.Log, v2)
	case fLog:
		return mathFn(a[0], math.Log10, v2)
	case fLower, fUpper:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		if c.fn.id == fLower {
			return strV(strings.ToLower(s))
		}
		return strV(strings.ToUpper(s))
	case fLpad, fRpad:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		if a[1].k != kInt && a[1].k != kDec && a[1].k != kStr {
			return undef
		}
		f, ok := a[1].toDecimal()
		if !ok {
			return undef
		}
		n := int(math.Max(0, math.Min(1000, math.Floor(f))))
		pad := strings.Repeat(" ", n)
		if c.fn.id == fLpad {
			return strV(pad + s)
		}
		return strV(s + pad)
	case fLtrim, fRtrim, fTrim:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		switch c.fn.id {
		case fLtrim:
			return strV(strings.TrimLeft(s, " \t"))
		case fRtrim:
			return strV(strings.TrimRight(s, " \t"))
		}
		return strV(strings.Trim(s, " \t\n\r\f\v"))
	case fMod:
		return arith(tPercent, a[0], a[1], v2)
	case fNanvl:
		if a[0].k == kUndef || a[0].k == kNull {
			return a[1]
		}
		return a[0]
	case fNewUUID:
		if ev.m.NewUUID != nil {
			return strV(ev.m.NewUUID())
		}
		return strV(randomUUID())
	case fNumBytes:
		s, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		return intV(int64(len(s)))
	case fParseTime:
		return parseTimeFn(c, a, v2)
	case fPower:
		x, ok1 := numArg(a[0])
		y, ok2 := numArg(a[1])
		if !ok1 || !ok2 {
			return undef
		}
		return decDouble(math.Pow(x, y), v2)
	case fPrincipal:
		return nonEmpty(ev.m.Principal)
	case fRand:
		return decRaw(mrand.Float64()) // #nosec G404 -- the AWS IoT SQL function rand(), not a secret
	case fRegexpMatches, fRegexpReplace, fRegexpSubstr:
		return regexpFn(c, a, v2)
	case fReplace:
		s, ok1 := a[0].toStr(v2)
		old, ok2 := a[1].toStr(v2)
		nw, ok3 := a[2].toStr(v2)
		if !ok1 || !ok2 || !ok3 {
			return undef
		}
		return strV(strings.ReplaceAll(s, old, nw))
	case fSign:
		f, ok := numArg(a[0])
		if !ok {
			return undef
		}
		switch {
		case f > 0:
			return intV(1)
		case f < 0:
			return intV(-1)
		}
		return intV(0)
	case fSin:
		return mathFn(a[0], math.Sin, v2)
	case fSinh:
		return mathFn(a[0], math.Sinh, v2)
	case fSqlVersion:
		return strV(string(ev.version))
	case fSqrt:
		return mathFn(a[0], math.Sqrt, v2)
	case fSubstring:
		return substringFn(a, v2)
	case fTan:
		return mathFn(a[0], math.Tan, v2)
	case fTanh:
		return mathFn(a[0], math.Tanh, v2)
	case fTimeToEpoch:
		return timeToEpochFn(c, a, v2)
	case fTimestamp:
		return intV(ev.now().UnixMilli())
	case fTopic:
		t := ev.m.Topic
		// Basic Ingest: the $aws/rules/<rule-name>/ prefix is not part of topic().
		if strings.HasPrefix(t, "$aws/rules/") {
			if i := strings.IndexByte(t[len("$aws/rules/"):], '/'); i >= 0 {
				t = t[len("$aws/rules/")+i+1:]
			}
		}
		if len(a) == 0 {
			return strV(t)
		}
		n, ok := intArg(a[0])
		if !ok {
			return undef
		}
		lv, ok := topicLevel(t, n)
		if !ok {
			return undef
		}
		return strV(lv)
	case fTraceID:
		return undef // a local message has no MQTT trace id; AWS returns Undefined then too
	case fTransform:
		return transformFn(a)
	case fTrunc:
		return truncFn(a[0], a[1], v2)
	case fExternal:
		return undef
	}
	return undef
}

func nonEmpty(s string) value {
	if s == "" {
		return undef
	}
	return strV(s)
}

// numArg converts a function argument that the reference types as Decimal: Int, Decimal and
// numeric strings convert; everything else (Boolean included) is Undefined.
func numArg(v value) (float64, bool) {
	if v.k != kInt && v.k != kDec && v.k != kStr {
		return 0, false
	}
	return v.toDecimal()
}

// intArg converts an argument typed Int: "non-Int numbers are rounded down to the nearest Int".
func intArg(v value) (int64, bool) {
	if v.k != kInt && v.k != kDec && v.k != kStr {
		return 0, false
	}
	return v.toIntFloor()
}

// mathFn applies a double-precision function; NaN results ("imaginary") are Undefined.
func mathFn(v value, fn func(float64) float64, v2 bool) value {
	f, ok := numArg(v)
	if !ok {
		return undef
	}
	return decDouble(fn(f), v2)
}

func roundFn(id funcID, v value) value {
	if v.k == kInt {
		return v
	}
	if v.k != kDec && v.k != kStr {
		return undef
	}
	d, ok := v.toDec()
	if !ok {
		return undef
	}
	var i int64
	switch id {
	case fCeil:
		i, ok = d.ceilInt()
	case fFloor:
		i, ok = d.floorInt()
	default:
		i, ok = d.roundInt() // half away from zero: the reference's round(-1.5) = -2
	}
	if !ok {
		// Beyond an Int: such a Decimal is already a whole number.
		return decOf(d.stripZeros(), false)
	}
	return intV(i)
}

// toIntNearest is the "To int" conversion used by get(): Decimals round to the nearest Int,
// strings are parsed as Decimals and truncated.
func toIntNearest(v value) (int64, bool) {
	switch v.k {
	case kInt:
		return v.i, true
	case kDec:
		return v.dec().roundInt()
	case kStr:
		d, ok := parseDecimalString(v.s)
		if !ok {
			return 0, false
		}
		return d.trunc(0).toInt()
	}
	return 0, false
}

func getFn(c, k value, v2 bool) value {
	switch c.k {
	case kArr:
		i, ok := toIntNearest(k)
		if !ok {
			return undef
		}
		return c.index(i)
	case kStr:
		i, ok := toIntNearest(k)
		if !ok || i < 0 {
			return undef
		}
		n := int64(0)
		for _, r := range c.s {
			if n == i {
				return strV(string(r))
			}
			n++
		}
		return undef
	case kObj:
		if k.k != kStr {
			return undef
		}
		return c.member(k.s)
	}
	return undef
}

// concatValues implements concat() (and "||"): arrays are flattened into one array; otherwise the
// arguments are converted to strings and joined.
func concatValues(ev *evaluator, a []value) value {
	if len(a) == 0 {
		return undef
	}
	anyArr := false
	for _, v := range a {
		if v.k == kArr {
			anyArr = true
		}
	}
	if anyArr {
		var out []value
		for _, v := range a {
			if v.k == kArr {
				it := v.iter()
				for {
					e, ok := it.next()
					if !ok {
						break
					}
					out = append(out, ev.norm(e))
				}
				continue
			}
			if v.defined() {
				out = append(out, v)
			}
		}
		return arrV(out)
	}
	var b strings.Builder
	for _, v := range a {
		s, ok := v.toStr(ev.v2)
		if !ok {
			return undef
		}
		b.WriteString(s)
	}
	return strV(b.String())
}

func castTo(v value, ty string, v2 bool) value {
	switch ty {
	case "string", "nvarchar", "text", "ntext", "varchar":
		s, ok := v.toStr(v2)
		if !ok {
			return undef
		}
		return strV(s)
	case "int", "integer":
		switch v.k {
		case kBool:
			if v.b {
				return intV(1)
			}
			return intV(0)
		case kInt, kDec, kStr:
			i, ok := v.toIntFloor()
			if !ok {
				return undef
			}
			return intV(i)
		}
		return undef
	case "double", "decimal":
		switch v.k {
		case kBool:
			if v.b {
				return decOf(dec{10, -1}, v2) // 1.0
			}
			return decOf(dec{0, -1}, v2) // 0.0
		case kInt, kDec, kStr:
			if ty == "double" {
				// "Casts value to Decimal (with double precision)".
				f, ok := v.toDecimal()
				if !ok {
					return undef
				}
				return decV(f, v2)
			}
			d, ok := v.toDec() // an Int gives "a Decimal with no decimal point"
			if !ok {
				return undef
			}
			return decOf(d, v2)
		}
		return undef
	case "bool", "boolean":
		switch v.k {
		case kInt:
			return boolV(v.i != 0)
		case kDec:
			return boolV(v.coefNonZero())
		case kBool:
			return v
		case kStr:
			b, ok := v.toBool()
			if !ok {
				return undef
			}
			return boolV(b)
		}
	}
	return undef
}

func hashHex(name, s string) string {
	var h hash.Hash
	switch name {
	case "md2":
		sum := md2Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	case "md5":
		h = md5.New() // #nosec G401 -- the AWS IoT SQL function md5(), which rules call, not a security check
	case "sha1":
		h = sha1.New() // #nosec G401 -- the AWS IoT SQL function sha1(), which rules call, not a security check
	case "sha224":
		h = sha256.New224()
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	default:
		h = sha512.New()
	}
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// decode implements decode(value, 'base64'): a decoded JSON document becomes a value that can be
// addressed; other text is returned as a string; undecodable input gives Null (reference).
// decode(*, 'proto', ...) needs the protobuf descriptor in S3 and is Undefined locally.
func (ev *evaluator) decode(c *callExpr, a []value) value {
	scheme := strings.ToLower(c.args[1].(*litExpr).v.s)
	if scheme != "base64" {
		return undef
	}
	var in string
	if _, star := c.args[0].(*starExpr); star {
		in = string(ev.m.Payload)
	} else {
		if a[0].k != kStr {
			return undef
		}
		in = a[0].s
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(in))
	if err != nil {
		return nullV
	}
	d := &doc{}
	if d.parse(string(raw)) == nil {
		return ev.norm(d.value(0))
	}
	return strV(string(raw))
}

// regexpFn implements regexp_matches, regexp_replace and regexp_substr with Go's RE2 syntax (the
// reference uses Java's; constructs RE2 lacks, such as backreferences, give Undefined).
func regexpFn(c *callExpr, a []value, v2 bool) value {
	s, ok := a[0].toStr(v2)
	if !ok {
		return undef
	}
	re := c.re
	if re == nil {
		pat, ok := a[1].toStr(v2)
		if !ok {
			return undef
		}
		var err error
		re, err = regexp.Compile(pat)
		if err != nil {
			return undef
		}
	}
	switch c.fn.id {
	case fRegexpMatches:
		return boolV(re.MatchString(s))
	case fRegexpSubstr:
		loc := re.FindStringIndex(s)
		if loc == nil {
			return emptyStr
		}
		return strV(s[loc[0]:loc[1]])
	}
	repl, ok := a[2].toStr(v2)
	if !ok {
		return undef
	}
	return strV(re.ReplaceAllString(s, javaReplacement(repl)))
}

// javaReplacement turns a Java replacement string ($1, \$) into Go's form (${1}, $$).
func javaReplacement(r string) string {
	if !strings.ContainsAny(r, "$\\") {
		return r
	}
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		switch c := r[i]; {
		case c == '\\' && i+1 < len(r):
			i++
			if r[i] == '$' {
				b.WriteString("$$")
			} else {
				b.WriteByte(r[i])
			}
		case c == '$':
			j := i + 1
			for j < len(r) && r[j] >= '0' && r[j] <= '9' {
				j++
			}
			if j == i+1 {
				b.WriteString("$$")
				continue
			}
			b.WriteString("${" + r[i+1:j] + "}")
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func substringFn(a []value, v2 bool) value {
	s, ok := a[0].toStr(v2)
	if !ok {
		return undef
	}
	runes := []rune(s)
	n := float64(len(runes))
	idx := func(v value) (int, bool) {
		f, ok := numArg(v)
		if !ok {
			return 0, false
		}
		f = math.Floor(f)
		return int(math.Max(0, math.Min(n, f))), true
	}
	start, ok := idx(a[1])
	if !ok {
		return undef
	}
	end := len(runes)
	if len(a) == 3 {
		if end, ok = idx(a[2]); !ok {
			return undef
		}
	}
	if start >= end {
		return emptyStr
	}
	return strV(string(runes[start:end]))
}

func transformFn(a []value) value {
	mode, ok := a[0].toStr(false)
	if !ok || mode != "enrichArray" || a[1].k != kObj || a[2].k != kArr {
		return undef
	}
	out := make([]value, 0, a[2].length())
	it := a[2].iter()
	for {
		e, ok := it.next()
		if !ok {
			break
		}
		if e.k != kObj {
			continue
		}
		o := &object{}
		for m := e.iter(); ; {
			v, ok := m.next()
			if !ok {
				break
			}
			o.set(m.key, v)
		}
		for m := a[1].iter(); ; {
			v, ok := m.next()
			if !ok {
				break
			}
			o.set(m.key, v)
		}
		out = append(out, objV(o))
	}
	return arrV(out)
}

// truncFn truncates toward zero to n decimal places (0..34) and strips trailing zeros, so that a
// whole result is an Int (the reference: trunc(2.00, 5) = 2).
func truncFn(x, n value, v2 bool) value {
	if x.k == kInt && n.k == kInt {
		return x
	}
	if x.k != kInt && x.k != kDec && x.k != kStr {
		return undef
	}
	d, ok := x.toDec()
	if !ok {
		return undef
	}
	if n.k != kInt && n.k != kDec {
		return undef
	}
	places, ok := n.toIntFloor()
	if !ok {
		return undef
	}
	places = max(0, min(34, places))
	return decOf(d.trunc(int32(places)).stripZeros(), true)
}
