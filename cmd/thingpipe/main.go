// Command thingpipe turns an AWS IoT fleet's MQTT traffic into finished work. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra, so a command can say "exit 2" without calling
// os.Exit from deep inside (which would skip deferred clean-up).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err so main exits with code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "thingpipe",
		Short: "Turn AWS IoT MQTT traffic into finished work",
		Long: `thingpipe routes an AWS IoT fleet's MQTT messages through topic rules into SQS and Kinesis and
runs four stages on them: provisioning completion, user-device binding, alerting and telemetry
archival. Rule files are evaluated locally with thingpipe's own AWS IoT SQL engine and deploy to
AWS IoT unchanged.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRulesCmd())
	root.AddCommand(newRunCmd())
	root.AddCommand(newLocalCmd())
	root.AddCommand(newSimulateCmd())
	root.AddCommand(newBenchCmd())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "thingpipe:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
