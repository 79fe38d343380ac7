package iotsql_test

import (
	"fmt"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

func Example() {
	q, err := iotsql.Compile(
		`SELECT deviceId, metrics.temperature AS t, topic(2) AS thing FROM 'dt/+/telemetry' WHERE metrics.temperature > 30`,
		iotsql.Version20160323)
	if err != nil {
		panic(err)
	}
	m := &iotsql.Message{Topic: "dt/dev-7/telemetry", Payload: []byte(`{"deviceId":"dev-7","metrics":{"temperature":31.5}}`)}
	res, err := q.Eval(m)
	fmt.Println(res.Matched, string(res.Output), err)

	tmpl, _ := iotsql.CompileTemplate("alerts/${topic(2)}/${upper(deviceId)}", iotsql.Version20160323)
	s, _ := tmpl.Render(m)
	fmt.Println(s)

	_, err = iotsql.Compile("SELECT a FROM 'x' WHERE b >", iotsql.DefaultVersion)
	fmt.Println(err)
	// Output:
	// true {"deviceId":"dev-7","t":31.5,"thing":"dev-7"} <nil>
	// alerts/dev-7/DEV-7
	// iotsql: 1:28: expected an expression, found end of input
}
