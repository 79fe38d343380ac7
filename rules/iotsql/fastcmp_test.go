package iotsql

import (
	"fmt"
	"testing"
)

// disableFast clears the fast comparison paths of a compiled WHERE clause.
func disableFast(e expr) {
	switch x := e.(type) {
	case *binExpr:
		x.fast = nil
		disableFast(x.l)
		disableFast(x.r)
	case *unaryExpr:
		disableFast(x.x)
	}
}

// The fast "path op literal" comparison gives exactly what the general evaluation gives.
func TestFastCompareMatchesGeneral(t *testing.T) {
	values := []string{`1`, `-1`, `0`, `21.7`, `21.70`, `80`, `80.0`, `1e2`, `123456789012345678901234`, `1E-1000`,
		`"21.7"`, `"abc"`, `"a\"b"`, `""`, `true`, `false`, `null`, `[1]`, `{"x":1}`}
	literals := []string{`1`, `80`, `21.7`, `-5.5`, `0.0`, `'21.7'`, `'abc'`, `'a"b'`, `''`}
	ops := []string{"=", "<>", "<", "<=", ">", ">="}
	for _, v := range []Version{Version20151008, Version20160323} {
		for _, val := range values {
			payload := []byte(`{"a":{"b":` + val + `}}`)
			for _, lit := range literals {
				for _, op := range ops {
					for _, form := range []string{"a.b %s %s", "%[2]s %[1]s a.b", "missing %s %s"} {
						cond := fmt.Sprintf(form, op, lit)
						if form == "%[2]s %[1]s a.b" {
							cond = fmt.Sprintf("%s %s a.b", lit, op)
						}
						sql := "SELECT VALUE " + cond + " FROM 't'"
						fast := mustCompile(t, sql, v)
						slow := mustCompile(t, sql, v)
						disableFast(slow.stmt.items[0].x)
						m1 := &Message{Topic: "t", Payload: payload}
						m2 := &Message{Topic: "t", Payload: payload}
						r1, err1 := fast.Eval(m1)
						r2, err2 := slow.Eval(m2)
						if string(r1.Output) != string(r2.Output) || (err1 == nil) != (err2 == nil) {
							t.Errorf("%s on %s (%s): fast %s %v, general %s %v", cond, payload, v, r1.Output, err1, r2.Output, err2)
						}
					}
				}
			}
		}
	}
}
