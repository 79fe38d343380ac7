package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// scanner validates JSON in one pass without building values: syntax, nesting depth, duplicate keys
// and number ranges, remembering only the raw bytes of the top-level object's fields. It is the first
// thing every decoder runs, on untrusted bytes, so it allocates little and never recurses deeper
// than MaxDepth.
type scanner struct {
	input string
	b     []byte
	i     int
	path  []pathElem // where the scanner is, for error messages
}

type pathElem struct {
	key   []byte // nil inside an array
	array bool
}

func (s *scanner) pathString() string {
	var sb strings.Builder
	for _, e := range s.path {
		if e.array {
			sb.WriteString("[]")
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.Write(e.key)
	}
	return sb.String()
}

func (s *scanner) syntax(format string, args ...any) error {
	if s.i >= len(s.b) {
		return &DecodeError{Input: s.input, Kind: ErrNotJSON, Detail: fmt.Sprintf("truncated at byte %d", len(s.b))}
	}
	return &DecodeError{Input: s.input, Kind: ErrNotJSON, Detail: fmt.Sprintf(format, args...) + fmt.Sprintf(" (byte %d)", s.i)}
}

func (s *scanner) unexpected() error {
	if s.i >= len(s.b) {
		return s.syntax("")
	}
	return s.syntax("invalid character %q", s.b[s.i])
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// scanObject validates b, which must be one JSON object, and returns its top-level fields (slices of
// b).
func scanObject(input string, b []byte) (map[string]json.RawMessage, error) {
	s := &scanner{input: input, b: b}
	s.ws()
	if s.i >= len(b) {
		return nil, &DecodeError{Input: input, Kind: ErrNotJSON, Detail: "empty payload"}
	}
	if b[s.i] == '[' {
		return nil, &DecodeError{Input: input, Kind: ErrWrongType, Detail: "payload must be a JSON object, not an array"}
	}
	if b[s.i] != '{' {
		// Not an object: a syntax error says "not JSON", anything else "wrong type".
		if err := s.value(1); errors.Is(err, ErrNotJSON) {
			return nil, err
		}
		return nil, &DecodeError{Input: input, Kind: ErrWrongType, Detail: "payload must be a JSON object"}
	}
	fields := map[string]json.RawMessage{}
	if err := s.object(1, fields); err != nil {
		return nil, err
	}
	s.ws()
	if s.i < len(b) {
		return nil, s.syntax("data after the top-level object")
	}
	return fields, nil
}

// value scans one value at nesting depth depth (containers opened so far).
func (s *scanner) value(depth int) error {
	s.ws()
	if s.i >= len(s.b) {
		return s.unexpected()
	}
	switch c := s.b[s.i]; {
	case c == '{' || c == '[':
		if depth >= MaxDepth {
			return &DecodeError{Input: s.input, Field: s.pathString(), Kind: ErrTooDeep, Detail: fmt.Sprintf("limit %d levels", MaxDepth)}
		}
		if c == '{' {
			return s.object(depth+1, nil)
		}
		return s.array(depth + 1)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.unexpected()
	}
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		for k := 0; k < len(lit) && s.i < len(s.b) && s.b[s.i] == lit[k]; k++ {
			s.i++
		}
		return s.unexpected()
	}
	s.i += len(lit)
	return nil
}

// object scans an object; when top is non-nil it records the raw fields.
func (s *scanner) object(depth int, top map[string]json.RawMessage) error {
	s.i++             // '{'
	var keys [][]byte // raw keys seen, for duplicates; objects are small, a scan is cheap
	var seen map[string]struct{}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.unexpected()
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := raw[1 : len(raw)-1]
		if escaped {
			var k string
			if err := json.Unmarshal(raw, &k); err != nil {
				return s.syntax("bad object key")
			}
			key = []byte(k)
		}
		dup := false
		if seen != nil {
			_, dup = seen[string(key)]
			seen[string(key)] = struct{}{}
		} else {
			for _, k := range keys {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
			keys = append(keys, key)
			if len(keys) > 16 {
				seen = make(map[string]struct{}, 32)
				for _, k := range keys {
					seen[string(k)] = struct{}{}
				}
			}
		}
		s.path = append(s.path, pathElem{key: key})
		if dup {
			return &DecodeError{Input: s.input, Field: s.pathString(), Kind: ErrDuplicateKey}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.unexpected()
		}
		s.i++
		s.ws()
		start := s.i
		if err := s.value(depth); err != nil {
			return err
		}
		if top != nil {
			top[string(key)] = s.b[start:s.i]
		}
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.i >= len(s.b) {
			return s.unexpected()
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.unexpected()
		}
	}
}

func (s *scanner) array(depth int) error {
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	s.path = append(s.path, pathElem{array: true})
	defer func() { s.path = s.path[:len(s.path)-1] }()
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.unexpected()
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.unexpected()
		}
	}
}

// str scans a string and returns its raw bytes (with quotes) and whether it has escapes.
func (s *scanner) str() ([]byte, bool, error) {
	start := s.i
	s.i++ // '"'
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start:s.i], escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return nil, false, s.unexpected()
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for k := 0; k < 4; k++ {
					if s.i >= len(s.b) || !isHex(s.b[s.i]) {
						return nil, false, s.syntax("bad \\u escape in string")
					}
					s.i++
				}
			default:
				return nil, false, s.syntax("bad escape in string")
			}
		case c < 0x20:
			return nil, false, s.syntax("control character in string")
		default:
			s.i++
		}
	}
	return nil, false, s.unexpected()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func (s *scanner) number() error {
	start := s.i
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return s.unexpected()
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.unexpected()
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.unexpected()
		}
	}
	if err := checkNumber(json.Number(s.b[start:s.i])); err != nil {
		return &DecodeError{Input: s.input, Field: s.pathString(), Kind: ErrNumberRange, Detail: err.Error()}
	}
	return nil
}
