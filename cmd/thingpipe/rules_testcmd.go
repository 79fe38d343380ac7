package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/rules"
)

func newRulesTestCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test DIR",
		Short: "Run the rule test cases (*.test.yaml) in DIR against the rule files in DIR",
		Long: `test loads the rule files in DIR, resolves them (for account 123456789012 in us-east-1 unless a test
file sets env:), and runs every case of every *.test.yaml / *.test.yml / *.test.json file in DIR:
a message in (topic, clientId, payload, or a messageFile), and out the rules that must match, their
SELECT output, their actions with templates rendered and what each sends, and their errorAction.

A failed case prints a readable diff and the command exits 1. -v prints every case and what each
matched rule does.`,
		Example: `  thingpipe rules test deploy/rules
  thingpipe rules test -v deploy/rules`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			results, err := rules.RunTests(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range results {
				if r.Passed() {
					if verbose {
						fmt.Fprintf(out, "PASS %s: %s\n", r.File, r.Name)
						fmt.Fprintf(out, "    message on %s\n", r.Message.Topic)
						rules.WriteInvocations(out, "    ", r.Invocations)
					}
					continue
				}
				failed++
				fmt.Fprintf(out, "FAIL %s: %s\n", r.File, r.Name)
				fmt.Fprintf(out, "    message on %s\n", r.Message.Topic)
				for _, f := range r.Failures {
					fmt.Fprintf(out, "    %s\n", f)
				}
				if verbose {
					fmt.Fprintf(out, "    what happened:\n")
					rules.WriteInvocations(out, "      ", r.Invocations)
				}
			}
			if failed > 0 {
				return withCode(1, fmt.Errorf("%d of %d rule test cases failed", failed, len(results)))
			}
			fmt.Fprintf(out, "ok: %d rule test cases passed\n", len(results))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every case and what each matched rule does")
	return cmd
}
