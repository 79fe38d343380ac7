package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// The config is decoded by walking the Config struct rather than through encoding/json, so that
// every error (unknown key, wrong type, bad duration) names the full key path, and so that the same
// walk defines the environment variable names.
//
// Environment convention: THINGPIPE_ + the key path in upper case, with "__" between levels (a single
// "_" is part of a key name): http_addr → THINGPIPE_HTTP_ADDR, log.level → THINGPIPE_LOG__LEVEL,
// binding.retry.max_retries → THINGPIPE_BINDING__RETRY__MAX_RETRIES. Lists of strings are
// comma-separated (THINGPIPE_STAGES=alerting,archival); alerting.policies takes a YAML or JSON list.

const envPrefix = "THINGPIPE_"

// EnvConfigFile names the config file when --config is not given; it is not a config key.
const EnvConfigFile = "THINGPIPE_CONFIG"

var durationType = reflect.TypeFor[Duration]()

type field struct {
	name  string
	index []int
}

// fieldsOf lists t's keys in declaration order, with the fields of untagged embedded structs
// promoted, as encoding/json does.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				out = append(out, field{sub.name, append([]int{i}, sub.index...)})
			}
			continue
		}
		if !f.IsExported() || tag == "-" || tag == "" {
			continue
		}
		out = append(out, field{tag, []int{i}})
	}
	return out
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// isLeaf reports whether values of t are set as a whole (not key by key).
func isLeaf(t reflect.Type) bool { return t == durationType || t.Kind() != reflect.Struct }

func describe(raw any) string {
	switch r := raw.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(r)
	case json.Number:
		return "number " + r.String()
	case bool:
		return "boolean " + strconv.FormatBool(r)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", raw)
}

// decodeValue sets v from raw (a value decoded from JSON with UseNumber), collecting one error per
// bad key.
func decodeValue(path string, v reflect.Value, raw any, errs *[]error) {
	bad := func(format string, args ...any) {
		*errs = append(*errs, &FieldError{Key: path, Msg: fmt.Sprintf(format, args...)})
	}
	t := v.Type()
	if t == durationType {
		s, ok := raw.(string)
		if !ok {
			bad("must be a duration like 30s, got %s", describe(raw))
			return
		}
		d, err := parseDuration(s)
		if err != nil {
			bad("%v", err)
			return
		}
		v.SetInt(int64(d))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			bad("must be a mapping, got %s", describe(raw))
			return
		}
		fields := map[string][]int{}
		for _, f := range fieldsOf(t) {
			fields[f.name] = f.index
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			idx, ok := fields[k]
			if !ok {
				*errs = append(*errs, &FieldError{Key: joinKey(path, k), Msg: "unknown key"})
				continue
			}
			decodeValue(joinKey(path, k), v.FieldByIndex(idx), m[k], errs)
		}
	case reflect.Pointer:
		if raw == nil {
			v.SetZero()
			return
		}
		p := reflect.New(t.Elem())
		n := len(*errs)
		decodeValue(path, p.Elem(), raw, errs)
		if len(*errs) == n {
			v.Set(p)
		}
	case reflect.Slice:
		if raw == nil {
			v.SetZero()
			return
		}
		list, ok := raw.([]any)
		if !ok {
			bad("must be a list, got %s", describe(raw))
			return
		}
		// A fresh slice: decoding into the old elements would merge defaults into the new items.
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, item := range list {
			decodeValue(fmt.Sprintf("%s[%d]", path, i), s.Index(i), item, errs)
		}
		v.Set(s)
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			bad("must be a string, got %s", describe(raw))
			return
		}
		v.SetString(s)
	case reflect.Int:
		n, ok := raw.(json.Number)
		i, err := strconv.ParseInt(string(n), 10, 0)
		if !ok || err != nil {
			bad("must be an integer, got %s", describe(raw))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		n, ok := raw.(json.Number)
		f, err := strconv.ParseFloat(string(n), 64)
		if !ok || err != nil {
			bad("must be a number, got %s", describe(raw))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			bad("must be true or false, got %s", describe(raw))
			return
		}
		v.SetBool(b)
	default:
		bad("unsupported type %s", t) // a programming error in Config, caught by the tests
	}
}

// yamlToRaw turns YAML (or JSON, which is YAML) into generic values with exact numbers.
func yamlToRaw(data []byte) (any, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// parseYAML decodes a config file over cfg: keys it sets replace cfg's values, lists as a whole.
// name is the file name, for syntax errors.
func parseYAML(cfg Config, data []byte, name string) (Config, error) {
	raw, err := yamlToRaw(data)
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", name, err)
	}
	if raw == nil { // empty file
		return cfg, nil
	}
	var errs []error
	decodeValue("", reflect.ValueOf(&cfg).Elem(), raw, &errs)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// EnvName returns the environment variable that overrides a key path such as "log.level".
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// leafKeys lists every key path that is set as a whole, in declaration order.
func leafKeys(t reflect.Type, path string) []string {
	var out []string
	for _, f := range fieldsOf(t) {
		key := joinKey(path, f.name)
		ft := t.FieldByIndex(f.index).Type
		if isLeaf(ft) {
			out = append(out, key)
		} else {
			out = append(out, leafKeys(ft, key)...)
		}
	}
	return out
}

// envRaw converts an environment value to what decodeValue expects for type t.
func envRaw(t reflect.Type, s string) (any, error) {
	if t == durationType {
		return s, nil
	}
	switch t.Kind() {
	case reflect.String:
		return s, nil
	case reflect.Int, reflect.Float64:
		n := json.Number(strings.TrimSpace(s))
		if _, err := n.Float64(); err != nil {
			return s, nil // decodeValue reports it with the key
		}
		return n, nil
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return s, nil // decodeValue reports it with the key
		}
		return b, nil
	case reflect.Pointer:
		return envRaw(t.Elem(), s)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(s), "[") {
			var items []any
			for item := range strings.SplitSeq(s, ",") {
				if item = strings.TrimSpace(item); item != "" {
					items = append(items, item)
				}
			}
			if items == nil {
				items = []any{}
			}
			return items, nil
		}
		raw, err := yamlToRaw([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("must be a YAML or JSON list: %v", err)
		}
		return raw, nil
	}
	return s, nil
}

// applyEnv applies THINGPIPE_* variables from environ ("KEY=value" entries) over cfg. An unknown
// THINGPIPE_ variable is an error: a typo must not silently leave a default in place.
func applyEnv(cfg Config, environ []string) (Config, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, envPrefix) && k != EnvConfigFile {
			vars[k] = val
		}
	}
	if len(vars) == 0 {
		return cfg, nil
	}
	root := reflect.ValueOf(&cfg).Elem()
	var errs []error
	for _, key := range leafKeys(root.Type(), "") {
		name := EnvName(key)
		s, ok := vars[name]
		if !ok {
			continue
		}
		delete(vars, name)
		v := fieldByKey(root, key)
		raw, err := envRaw(v.Type(), s)
		if err != nil {
			errs = append(errs, &FieldError{Key: key + " (from " + name + ")", Msg: err.Error()})
			continue
		}
		var fieldErrs []error
		decodeValue(key, v, raw, &fieldErrs)
		for _, e := range fieldErrs {
			var fe *FieldError
			if errors.As(e, &fe) {
				fe.Key += " (from " + name + ")"
			}
			errs = append(errs, e)
		}
	}
	unknown := make([]string, 0, len(vars))
	for k := range vars {
		unknown = append(unknown, k)
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		errs = append(errs, &FieldError{Key: k, Msg: "unknown environment variable (nested keys are joined with __, e.g. THINGPIPE_LOG__LEVEL)"})
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// fieldByKey finds the struct field for a dotted key path produced by leafKeys.
func fieldByKey(v reflect.Value, key string) reflect.Value {
	for part := range strings.SplitSeq(key, ".") {
		for _, f := range fieldsOf(v.Type()) {
			if f.name == part {
				v = v.FieldByIndex(f.index)
				break
			}
		}
	}
	return v
}
