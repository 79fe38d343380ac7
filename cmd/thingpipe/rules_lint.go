package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/rules"
)

func newRulesLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint DIR",
		Short: "Check the rule files in DIR; exit 1 if any has an error",
		Long: `lint checks every rule file (*.json, *.yaml, *.yml, except *.test.*) directly in DIR and prints one
line per problem, as "file: rule: problem" ("file: rule: warning: problem" for warnings).

Errors (exit status 1): unreadable files and unknown fields, rule names that do not match
^[a-zA-Z0-9_]+$ or are used twice, more than 10 actions, actions with no type or more than one,
missing required action fields, a substitution template in a roleArn, republish qos other than 0
or 1, an errorAction republishing to a $ topic, unknown {{placeholders}}, invalid SQL, SQL
versions or substitution templates (with line:column), malformed queue URLs.
Warnings: SQL functions that need AWS and evaluate to Undefined locally, action types the local
bridge does not carry out, rules without actions or without an errorAction.`,
		Example: `  thingpipe rules lint deploy/rules`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			problems, err := rules.Lint(args[0])
			if err != nil {
				return err
			}
			errs, warns := 0, 0
			out := cmd.OutOrStdout()
			for _, p := range problems {
				fmt.Fprintln(out, p)
				if p.Severity == rules.SeverityError {
					errs++
				} else {
					warns++
				}
			}
			if errs > 0 {
				return withCode(1, fmt.Errorf("lint: %d error(s), %d warning(s)", errs, warns))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "lint: no errors, %d warning(s)\n", warns)
			return nil
		},
	}
}
