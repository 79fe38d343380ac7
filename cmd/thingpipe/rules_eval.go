package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// evalResult is the JSON `rules eval` prints; other tools parse it, so its shape is fixed.
type evalResult struct {
	Matched bool            `json:"matched"`
	Output  json.RawMessage `json:"output"`
}

func newRulesEvalCmd() *cobra.Command {
	var sql, topic, version, clientID, payloadPath string
	cmd := &cobra.Command{
		Use:   "eval --sql SQL --topic TOPIC [--payload FILE|-]",
		Short: "Evaluate one AWS IoT SQL statement on one message and print the result as JSON",
		Long: `eval evaluates an AWS IoT SQL statement on one MQTT message with thingpipe's local engine and prints
exactly one JSON object on stdout:

  {"matched": true, "output": {...}}     the topic matched the FROM filter and WHERE was true
  {"matched": false, "output": null}     it did not

It exits 0 in both cases, and 2 (with the reason on stderr) when the SQL is invalid (the message gives
line:column) or the payload cannot be evaluated because it is not JSON.`,
		Example: `  echo '{"temperature": 31}' | thingpipe rules eval --topic dt/dev-42/telemetry --payload - \
    --sql "SELECT temperature, topic(2) AS thing FROM 'dt/+/telemetry' WHERE temperature > 30"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := iotsql.ParseVersion(version)
			if err != nil {
				return withCode(2, fmt.Errorf("--sql-version: %w", err))
			}
			q, err := iotsql.Compile(sql, v)
			if err != nil {
				var e *iotsql.Error
				if errors.As(err, &e) && e.Line > 0 {
					return withCode(2, fmt.Errorf("invalid SQL at %d:%d: %s", e.Line, e.Column, e.Msg))
				}
				return withCode(2, fmt.Errorf("invalid SQL: %w", err))
			}
			payload, err := readPayload(cmd.InOrStdin(), payloadPath)
			if err != nil {
				return withCode(2, err)
			}
			res, err := q.Eval(&iotsql.Message{Topic: topic, Payload: payload, ClientID: clientID})
			if err != nil {
				if errors.Is(err, iotsql.ErrPayloadNotJSON) {
					return withCode(2, fmt.Errorf("the payload is not JSON: %w", err))
				}
				return withCode(2, fmt.Errorf("evaluating: %w", err))
			}
			if res.Matched && len(res.Output) > 0 && !json.Valid(res.Output) {
				// SELECT * on a binary payload passes its bytes through, as AWS does; they are not JSON.
				return withCode(2, fmt.Errorf("the payload is not JSON: the SELECT output is its %d raw bytes", len(res.Output)))
			}
			out := evalResult{Matched: res.Matched, Output: res.Output}
			if !out.Matched || len(out.Output) == 0 {
				out.Output = json.RawMessage("null")
			}
			b, err := json.Marshal(out)
			if err != nil {
				return fmt.Errorf("encoding result: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sql, "sql", "", "the SQL statement, e.g. \"SELECT * FROM 'dt/+/telemetry'\" (required)")
	f.StringVar(&topic, "topic", "", "the MQTT topic the message was published to (required)")
	f.StringVar(&version, "sql-version", "", "AWS IoT SQL version: 2015-10-08 (the default, as in AWS) or 2016-03-23")
	f.StringVar(&clientID, "clientid", "", "the publishing client's id, returned by clientid()")
	f.StringVar(&payloadPath, "payload", "", "file holding the payload, or - for stdin (default: an empty payload)")
	_ = cmd.MarkFlagRequired("sql")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func readPayload(stdin io.Reader, path string) ([]byte, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the payload from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the --payload file the user names
	if err != nil {
		return nil, fmt.Errorf("reading the payload: %w", err)
	}
	return b, nil
}
