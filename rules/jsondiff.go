package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Generic JSON values (from decodeGeneric) compared semantically: key order and number spelling do not
// matter. Differences are listed as "path: want X, got Y" lines.

func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return x, nil
}

// toGeneric converts any marshalable value to its generic JSON form.
func toGeneric(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	x, _ := decodeGeneric(b)
	return x
}

func show(x any) string {
	if x == nil {
		return "null"
	}
	b, _ := marshalText(x)
	return string(b)
}

// marshalText is json.Marshal without HTML escaping: output is for people and terminals.
func marshalText(x any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	fa, errA := strconv.ParseFloat(string(a), 64)
	fb, errB := strconv.ParseFloat(string(b), 64)
	return errA == nil && errB == nil && fa == fb
}

// jsonDiff lists the differences between want and got. With subset, keys of got absent from want are
// ignored (at every level), so a test can name just the fields it cares about.
func jsonDiff(path string, want, got any, subset bool) []string {
	where := path
	if where == "" {
		where = "(top)"
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want %s, got %s", where, show(want), show(got))}
		}
		var out []string
		for _, k := range sortedKeys(w) {
			gv, present := g[k]
			if !present {
				out = append(out, fmt.Sprintf("%s: missing, want %s", joinPath(path, k), show(w[k])))
				continue
			}
			out = append(out, jsonDiff(joinPath(path, k), w[k], gv, subset)...)
		}
		if !subset {
			var extra []string
			for k := range g {
				if _, ok := w[k]; !ok {
					extra = append(extra, k)
				}
			}
			sort.Strings(extra)
			for _, k := range extra {
				out = append(out, fmt.Sprintf("%s: unexpected, got %s", joinPath(path, k), show(g[k])))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want %s, got %s", where, show(want), show(got))}
		}
		var out []string
		for i := 0; i < len(w) || i < len(g); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(g):
				out = append(out, fmt.Sprintf("%s: missing, want %s", p, show(w[i])))
			case i >= len(w):
				out = append(out, fmt.Sprintf("%s: unexpected, got %s", p, show(g[i])))
			default:
				out = append(out, jsonDiff(p, w[i], g[i], subset)...)
			}
		}
		return out
	case json.Number:
		if g, ok := got.(json.Number); ok && numbersEqual(w, g) {
			return nil
		}
	default:
		if want == got {
			return nil
		}
	}
	return []string{fmt.Sprintf("%s: want %s, got %s", where, show(want), show(got))}
}
