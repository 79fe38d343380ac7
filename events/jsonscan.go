package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits every decoder enforces before looking at fields.
const (
	// MaxPayloadBytes is AWS IoT's message size limit (128 KiB): AWS IoT, and the local broker, refuse
	// larger publishes.
	MaxPayloadBytes = 128 * 1024
	// MaxInputBytes is the largest input a decoder accepts: a device's largest payload plus room for
	// the fields a topic rule adds (the default rules add thingName or userId, at most 128 bytes each),
	// so a 128 KiB message that AWS IoT accepted is not dead-lettered for what its rule added.
	MaxInputBytes = MaxPayloadBytes + 1024
	// MaxDepth bounds object/array nesting, so a hostile payload cannot make decoding expensive.
	MaxDepth = 32
	// maxNumberLen bounds the text of one JSON number.
	maxNumberLen = 64
)

// object is a decoded JSON object whose values are kept raw, so each field is decoded (and its type
// checked) on its own with an error naming it.
type object struct {
	input  string
	prefix string
	fields map[string]json.RawMessage
}

// parseObject checks size, UTF-8, JSON syntax, nesting depth, duplicate keys and number ranges of b,
// which must hold one JSON object, and returns its top-level fields.
func parseObject(input string, b []byte) (object, error) {
	if len(b) > MaxInputBytes {
		return object{}, &DecodeError{Input: input, Kind: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(b), MaxInputBytes)}
	}
	if !utf8.Valid(b) {
		// encoding/json would silently replace bad bytes with U+FFFD; refuse instead.
		off := 0
		for off < len(b) {
			r, size := utf8.DecodeRune(b[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return object{}, &DecodeError{Input: input, Kind: ErrInvalidUTF8, Detail: fmt.Sprintf("at byte %d", off)}
	}
	// A private copy: the fields returned are slices of it and must not change under the caller.
	fields, err := scanObject(input, bytes.Clone(b))
	if err != nil {
		return object{}, err
	}
	return object{input: input, fields: fields}, nil
}

func checkNumber(n json.Number) error {
	s := string(n)
	if len(s) > maxNumberLen {
		return fmt.Errorf("%d digits, limit %d", len(s), maxNumberLen)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("%s does not fit a 64-bit float", truncate(s, 24))
	}
	return nil
}

func notJSON(input string, err error, off int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: fmt.Sprintf("%v (byte %d)", se, se.Offset)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: fmt.Sprintf("truncated at byte %d", off)}
	}
	return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: err.Error()}
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (o object) path(key string) string { return joinPath(o.prefix, key) }

func (o object) errf(key string, kind error, format string, args ...any) error {
	return &DecodeError{Input: o.input, Field: o.path(key), Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func typeName(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// str returns a required (required=true) or optional string field.
func (o object) str(key string, required bool) (string, error) {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		if required {
			return "", &DecodeError{Input: o.input, Field: o.path(key), Kind: ErrMissingField}
		}
		return "", nil
	}
	var s string
	if typeName(raw) != "string" {
		return "", o.errf(key, ErrWrongType, "want string, got %s", typeName(raw))
	}
	if t := bytes.TrimSpace(raw); bytes.IndexByte(t, '\\') < 0 {
		s = string(t[1 : len(t)-1]) // the scanner checked it: no escapes, nothing to decode
	} else if err := json.Unmarshal(raw, &s); err != nil {
		return "", o.errf(key, ErrWrongType, "want string, got %s", typeName(raw))
	}
	if required && s == "" {
		return "", o.errf(key, ErrInvalidValue, "empty string")
	}
	if strings.ContainsFunc(s, isControl) {
		return "", o.errf(key, ErrInvalidValue, "contains control characters")
	}
	return s, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// epochMillis returns a required or optional integer field holding epoch milliseconds.
func (o object) epochMillis(key string, required bool) (int64, bool, error) {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		if required {
			return 0, false, &DecodeError{Input: o.input, Field: o.path(key), Kind: ErrMissingField}
		}
		return 0, false, nil
	}
	if typeName(raw) != "number" {
		return 0, false, o.errf(key, ErrWrongType, "want integer epoch milliseconds, got %s", typeName(raw))
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return 0, false, o.errf(key, ErrNumberRange, "want integer epoch milliseconds, got %s", truncate(string(raw), 24))
	}
	// Up to the year 9999: anything beyond is garbage, not a clock.
	if v < 0 || v > 253402300799999 {
		return 0, false, o.errf(key, ErrNumberRange, "%d is not a plausible epoch-milliseconds time", v)
	}
	return v, true, nil
}

// int returns an optional integer field.
func (o object) int(key string) (int64, error) {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		return 0, nil
	}
	if typeName(raw) != "number" {
		return 0, o.errf(key, ErrWrongType, "want integer, got %s", typeName(raw))
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return 0, o.errf(key, ErrNumberRange, "want 64-bit integer, got %s", truncate(string(raw), 24))
	}
	return v, nil
}

// boolean returns an optional boolean field.
func (o object) boolean(key string) (bool, error) {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, o.errf(key, ErrWrongType, "want boolean, got %s", typeName(raw))
	}
	return b, nil
}

// thingName returns a required field holding a thing name.
func (o object) thingName(key string) (string, error) {
	s, err := o.str(key, true)
	if err != nil {
		return "", err
	}
	if err := ValidateThingName(s); err != nil {
		return "", o.errf(key, ErrBadThingName, "%v", err)
	}
	return s, nil
}

// stringMap returns an optional object field of string values.
func (o object) stringMap(key string) (map[string]string, error) {
	raw, ok := o.fields[key]
	if !ok || isNull(raw) {
		return nil, nil
	}
	if typeName(raw) != "object" {
		return nil, o.errf(key, ErrWrongType, "want object, got %s", typeName(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, o.errf(key, ErrWrongType, "want object")
	}
	sub := object{input: o.input, prefix: o.path(key), fields: m}
	out := make(map[string]string, len(m))
	for k := range m {
		v, err := sub.str(k, false)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}
