package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The reference implementation: the first version of the validator, built on encoding/json's
// tokenizer. Slow but simple; the hand-written scanner must agree with it (FuzzScannerMatchesReference).

type frame struct {
	isObject  bool
	expectKey bool
	keys      map[string]struct{}
	path      string
	key       string
}

// markValueDone records that a value ended: inside an object, the next token is a key.
func markValueDone(stack []*frame) {
	if n := len(stack); n > 0 && stack[n-1].isObject {
		stack[n-1].expectKey = true
	}
}

// scan walks every token of b once.
func scanReference(input string, b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	pathOf := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.isObject {
			return joinPath(top.path, top.key)
		}
		return top.path + "[]"
	}
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if first {
				return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: "empty payload"}
			}
			if len(stack) > 0 {
				return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: "truncated"}
			}
			return nil
		}
		if err != nil {
			return notJSON(input, err, dec.InputOffset())
		}
		if first && len(stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				if !ok {
					return &DecodeError{Input: input, Kind: ErrWrongType, Detail: "payload must be a JSON object"}
				}
				return &DecodeError{Input: input, Kind: ErrWrongType, Detail: "payload must be a JSON object, not an array"}
			}
		} else if len(stack) == 0 {
			return &DecodeError{Input: input, Kind: ErrNotJSON, Detail: fmt.Sprintf("data after the object at byte %d", dec.InputOffset())}
		}
		first = false
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.isObject && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				markValueDone(stack)
				continue
			}
			key := tok.(string) // the decoder guarantees object keys are strings
			if _, dup := top.keys[key]; dup {
				return &DecodeError{Input: input, Field: joinPath(top.path, key), Kind: ErrDuplicateKey}
			}
			top.keys[key] = struct{}{}
			top.key = key
			top.expectKey = false
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= MaxDepth {
					return &DecodeError{Input: input, Field: pathOf(), Kind: ErrTooDeep, Detail: fmt.Sprintf("limit %d levels", MaxDepth)}
				}
				stack = append(stack, &frame{isObject: v == '{', expectKey: v == '{', keys: map[string]struct{}{}, path: pathOf()})
			case '}', ']':
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			}
		case json.Number:
			if err := checkNumber(v); err != nil {
				return &DecodeError{Input: input, Field: pathOf(), Kind: ErrNumberRange, Detail: err.Error()}
			}
			markValueDone(stack)
		default:
			markValueDone(stack)
		}
	}
}

func parseReference(input string, b []byte) (map[string]json.RawMessage, error) {
	if err := scanReference(input, b); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return nil, &DecodeError{Input: input, Kind: ErrWrongType}
	}
	return fields, nil
}

func kindOf(err error) error {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Kind
	}
	return err
}

func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	if len(b) > MaxInputBytes || !validUTF8(b) {
		return // checked before either scanner runs
	}
	got, err := scanObject("x", bytes.Clone(b))
	want, refErr := parseReference("x", b)
	if (err == nil) != (refErr == nil) || kindOf(err) != kindOf(refErr) {
		t.Fatalf("input %q:\n scanner:   %v\n reference: %v", b, err, refErr)
	}
	if err != nil {
		var de, rde *DecodeError
		errors.As(err, &de)
		errors.As(refErr, &rde)
		if de.Field != rde.Field {
			t.Fatalf("input %q: field %q, reference %q", b, de.Field, rde.Field)
		}
		return
	}
	if len(got) != len(want) {
		t.Fatalf("input %q: %d fields, reference %d", b, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("input %q: field %q = %q, reference %q", b, k, got[k], v)
		}
	}
}

func TestScannerMatchesReferenceOnCorpus(t *testing.T) {
	for _, name := range corpusFiles(t) {
		b, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstReference(t, b)
	}
	for _, s := range []string{`{}`, ` { "a" : [ 1 , { "b" : null } ] , "c" : "\u00e9\n" } `, `{"a":1,}`, `{"a" 1}`, `{"a":01}`,
		`{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a\"b":1,"a\"b":2}`, `{"\u0061":1,"a":2}`,
		`{"a":[1,2,]}`, `{"a":[}`, `{"a":"` + "\x01" + `"}`, `{"a":1}x`, `{"a":1} `, `{"a":{"b":{"b":1,"b":2}}}`, `{"a":[{"x":1e999}]}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k3":0}`} {
		checkAgainstReference(t, []byte(s))
	}
}

func FuzzScannerMatchesReference(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, b []byte) { checkAgainstReference(t, b) })
}

var _ = fmt.Sprint
var _ = io.EOF

func validUTF8(b []byte) bool { return bytes.Equal(bytes.ToValidUTF8(b, nil), b) }
