package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// The rule model is the AWS SDK's own types.TopicRulePayload, so every action type AWS IoT knows is
// known here and the payload sent to CreateTopicRule is the one that was tested. The SDK types carry no
// JSON tags; AWS's wire names are the Go field names with a lower-case first letter (checked against
// the SDK's serializers for every action type), so this file maps between the two by reflection:
// strictly (exact names, unknown fields rejected with their path) when reading rule files, and in the
// AWS shape when printing rules.

// wireName is the AWS JSON name of an SDK struct field.
func wireName(field string) string {
	r, n := utf8.DecodeRuneInString(field)
	return string(unicode.ToLower(r)) + field[n:]
}

// unionMembers maps the SDK's union interfaces to their members, by wire name.
var unionMembers = map[reflect.Type]map[string]reflect.Type{
	reflect.TypeOf((*types.AssetPropertyVariant)(nil)).Elem(): {
		"stringValue":  reflect.TypeOf(types.AssetPropertyVariantMemberStringValue{}),
		"integerValue": reflect.TypeOf(types.AssetPropertyVariantMemberIntegerValue{}),
		"doubleValue":  reflect.TypeOf(types.AssetPropertyVariantMemberDoubleValue{}),
		"booleanValue": reflect.TypeOf(types.AssetPropertyVariantMemberBooleanValue{}),
	},
}

// FieldError is a problem with one field of a rule file, named by its path (e.g. actions[0].sqs.queueUrl).
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decodeValue sets v from the generic JSON value x (decoded with UseNumber).
func decodeValue(path string, x any, v reflect.Value) error {
	if x == nil { // null is the same as absent
		return nil
	}
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := decodeValue(path, x, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		obj, ok := x.(map[string]any)
		if !ok {
			return &FieldError{path, fmt.Sprintf("must be an object, not %s", jsonKind(x))}
		}
		fields := wireFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			i, ok := fields[k]
			if !ok {
				return &FieldError{path, fmt.Sprintf("unknown field %q (known: %s)", k, strings.Join(sortedKeys(fields), ", "))}
			}
			if err := decodeValue(joinPath(path, k), obj[k], v.Field(i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		s, ok := x.(string)
		if !ok {
			return &FieldError{path, fmt.Sprintf("must be a string, not %s", jsonKind(x))}
		}
		if allowed := enumValues(t); len(allowed) > 0 && !contains(allowed, s) {
			return &FieldError{path, fmt.Sprintf("%q is not one of %s", s, strings.Join(allowed, ", "))}
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			return &FieldError{path, fmt.Sprintf("must be true or false, not %s", jsonKind(x))}
		}
		v.SetBool(b)
		return nil
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := x.(json.Number)
		if !ok {
			return &FieldError{path, fmt.Sprintf("must be an integer, not %s", jsonKind(x))}
		}
		i, err := strconv.ParseInt(n.String(), 10, t.Bits())
		if err != nil {
			return &FieldError{path, fmt.Sprintf("%s is not an integer that fits %d bits", n, t.Bits())}
		}
		v.SetInt(i)
		return nil
	case reflect.Slice:
		arr, ok := x.([]any)
		if !ok {
			return &FieldError{path, fmt.Sprintf("must be an array, not %s", jsonKind(x))}
		}
		s := reflect.MakeSlice(t, len(arr), len(arr))
		for i, e := range arr {
			if err := decodeValue(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		obj, ok := x.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return &FieldError{path, fmt.Sprintf("must be an object, not %s", jsonKind(x))}
		}
		m := reflect.MakeMapWithSize(t, len(obj))
		for k, e := range obj {
			ev := reflect.New(t.Elem()).Elem()
			if err := decodeValue(joinPath(path, k), e, ev); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k), ev)
		}
		v.Set(m)
		return nil
	case reflect.Interface:
		members, ok := unionMembers[t]
		if !ok {
			return &FieldError{path, fmt.Sprintf("unsupported field type %s", t)}
		}
		obj, ok := x.(map[string]any)
		if !ok || len(obj) != 1 {
			return &FieldError{path, fmt.Sprintf("must be an object with exactly one of %s", strings.Join(sortedKeys(members), ", "))}
		}
		for k, e := range obj {
			mt, ok := members[k]
			if !ok {
				return &FieldError{path, fmt.Sprintf("unknown field %q (known: %s)", k, strings.Join(sortedKeys(members), ", "))}
			}
			p := reflect.New(mt)
			if err := decodeValue(joinPath(path, k), e, p.Elem().FieldByName("Value")); err != nil {
				return err
			}
			v.Set(p)
		}
		return nil
	}
	return &FieldError{path, fmt.Sprintf("unsupported field type %s", t)}
}

// wireFields maps wire names to exported field indexes of struct type t.
func wireFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() {
			m[wireName(f.Name)] = i
		}
	}
	return m
}

// enumValues returns the allowed values of an SDK enum type (one with a Values method), or nil.
func enumValues(t reflect.Type) []string {
	if t.Kind() != reflect.String || t.PkgPath() == "" {
		return nil
	}
	m := reflect.Zero(t).MethodByName("Values")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
		return nil
	}
	out := m.Call(nil)[0]
	vals := make([]string, out.Len())
	for i := range vals {
		vals[i] = out.Index(i).String()
	}
	return vals
}

func jsonKind(x any) string {
	switch x.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Object is a JSON object that keeps its keys in order, for output people read.
type Object []Member

// Member is one key of an Object.
type Member struct {
	Key   string
	Value any
}

// MarshalJSON writes the members in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshalText(m.Key)
		b.Write(k)
		b.WriteByte(':')
		v, err := marshalText(m.Value)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encodeValue converts an SDK value to a JSON-marshalable value in AWS's shape, leaving out fields
// that are not set (nil pointers, empty slices and maps, zero non-pointer scalars). ok is false when
// there is nothing to write.
func encodeValue(v reflect.Value) (out any, ok bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, false
		}
		e := v.Elem()
		if v.Kind() == reflect.Interface {
			// A union member: {"stringValue": "..."}.
			for name, mt := range unionMembers[v.Type()] {
				if e.Type() == reflect.PointerTo(mt) {
					val, _ := encodeValue(e.Elem().FieldByName("Value"))
					return Object{{name, val}}, true
				}
			}
			return nil, false
		}
		if e.Kind() != reflect.Struct { // *string, *bool, *int32: set means written, even if zero
			return e.Interface(), true
		}
		return encodeValue(e)
	case reflect.Struct:
		t := v.Type()
		var o Object
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if val, ok := encodeValue(v.Field(i)); ok {
				o = append(o, Member{wireName(f.Name), val})
			}
		}
		return o, true
	case reflect.Slice:
		if v.Len() == 0 {
			return nil, false
		}
		arr := make([]any, v.Len())
		for i := range arr {
			arr[i], _ = encodeValue(v.Index(i))
		}
		return arr, true
	case reflect.Map:
		if v.Len() == 0 {
			return nil, false
		}
		m := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			m[iter.Key().String()], _ = encodeValue(iter.Value())
		}
		return m, true
	case reflect.String:
		return v.String(), v.String() != ""
	case reflect.Bool:
		return v.Bool(), v.Bool()
	case reflect.Int32, reflect.Int64, reflect.Int:
		return v.Int(), v.Int() != 0
	}
	return nil, false
}

// ActionJSON returns an action in AWS's JSON shape, e.g. {"sqs":{"queueUrl":...,"roleArn":...}}.
func ActionJSON(a types.Action) Object {
	o, _ := encodeValue(reflect.ValueOf(a))
	obj, _ := o.(Object)
	return obj
}

// ActionType is the wire name of the action's type ("sqs", "kinesis", …), or "" when none is set. When
// several are set (an invalid action) it returns the first.
func ActionType(a types.Action) string {
	types := actionTypes(a)
	if len(types) == 0 {
		return ""
	}
	return types[0]
}

func actionTypes(a types.Action) []string {
	v := reflect.ValueOf(a)
	var out []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.IsExported() && !v.Field(i).IsNil() {
			out = append(out, wireName(f.Name))
		}
	}
	return out
}

// mapStrings returns v with every string passed through fn (path is the wire path). It copies only
// what changes: subtrees whose strings fn leaves alone are shared with v, which is why rule payloads are
// never modified in place. It is how placeholders are resolved and substitution templates rendered, in
// every field at once.
func mapStrings(path string, v reflect.Value, fn func(path, s string) (string, error)) (reflect.Value, bool, error) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v, false, nil
		}
		e, changed, err := mapStrings(path, v.Elem(), fn)
		if err != nil || !changed {
			return v, false, err
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(e)
		return p, true, nil
	case reflect.Interface:
		if v.IsNil() {
			return v, false, nil
		}
		for name, mt := range unionMembers[v.Type()] {
			if v.Elem().Type() == reflect.PointerTo(mt) {
				e, changed, err := mapStrings(joinPath(path, name), v.Elem(), fn)
				if err != nil || !changed {
					return v, false, err
				}
				out := reflect.New(v.Type()).Elem()
				out.Set(e)
				return out, true, nil
			}
		}
		return v, false, nil
	case reflect.Struct:
		t := v.Type()
		var out reflect.Value                                               // allocated on the first change
		member := strings.HasPrefix(t.Name(), "AssetPropertyVariantMember") // its Value is named by its key
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || v.Field(i).IsZero() {
				continue
			}
			fp := path
			if !member {
				fp = joinPath(path, wireName(f.Name))
			}
			e, changed, err := mapStrings(fp, v.Field(i), fn)
			if err != nil {
				return v, false, err
			}
			if changed {
				if !out.IsValid() {
					out = reflect.New(t).Elem()
					out.Set(v)
				}
				out.Field(i).Set(e)
			}
		}
		if !out.IsValid() {
			return v, false, nil
		}
		return out, true, nil
	case reflect.Slice:
		var out reflect.Value
		for i := 0; i < v.Len(); i++ {
			e, changed, err := mapStrings(fmt.Sprintf("%s[%d]", path, i), v.Index(i), fn)
			if err != nil {
				return v, false, err
			}
			if changed {
				if !out.IsValid() {
					out = reflect.MakeSlice(v.Type(), v.Len(), v.Len())
					reflect.Copy(out, v)
				}
				out.Index(i).Set(e)
			}
		}
		if !out.IsValid() {
			return v, false, nil
		}
		return out, true, nil
	case reflect.Map:
		var out reflect.Value
		iter := v.MapRange()
		for iter.Next() {
			e, changed, err := mapStrings(joinPath(path, iter.Key().String()), iter.Value(), fn)
			if err != nil {
				return v, false, err
			}
			if changed {
				if !out.IsValid() {
					out = reflect.MakeMapWithSize(v.Type(), v.Len())
					for it := v.MapRange(); it.Next(); {
						out.SetMapIndex(it.Key(), it.Value())
					}
				}
				out.SetMapIndex(iter.Key(), e)
			}
		}
		if !out.IsValid() {
			return v, false, nil
		}
		return out, true, nil
	case reflect.String:
		if v.Type().PkgPath() != "" { // enums are not free text
			return v, false, nil
		}
		s, err := fn(path, v.String())
		if err != nil {
			return v, false, &FieldError{path, err.Error()}
		}
		if s == v.String() {
			return v, false, nil
		}
		out := reflect.New(v.Type()).Elem()
		out.SetString(s)
		return out, true, nil
	}
	return v, false, nil
}

// mapActionStrings applies mapStrings to an action.
func mapActionStrings(path string, a types.Action, fn func(path, s string) (string, error)) (types.Action, error) {
	v, _, err := mapStrings(path, reflect.ValueOf(a), fn)
	if err != nil {
		return types.Action{}, err
	}
	return v.Interface().(types.Action), nil
}

// reflectValue is the settable value a pointer points to.
func reflectValue[T any](p *T) reflect.Value { return reflect.ValueOf(p).Elem() }
