package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/rules"
)

func newRulesRunCmd() *cobra.Command {
	var account, region string
	cmd := &cobra.Command{
		Use:   "run RULES_DIR MESSAGES",
		Short: "Run the rule set on sample messages and print what each rule would do",
		Long: `run loads the rule files in RULES_DIR, resolves them for --account and --region, evaluates them on
every sample message in MESSAGES (a directory of *.json / *.yaml message files, or one file) and
prints, per message, which rules match and what each of their actions would send where. Nothing is
sent: it needs no AWS access.

A message file holds {"topic": ..., "clientId": ..., "payload": {...}} (or "payloadText" for a
payload that is not JSON); see testdata/messages/.`,
		Example: `  thingpipe rules run deploy/rules testdata/messages`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := rules.Env{Account: account, Region: region}
			rs, err := rules.LoadRules(args[0], env)
			if err != nil {
				return err
			}
			msgs, err := rules.LoadSampleMessages(args[1])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s from %s (account %s, %s), %s from %s\n",
				plural(len(rs), "rule"), args[0], env.Account, env.Region, plural(len(msgs), "message"), args[1])
			fmt.Fprintln(out, "Nothing is sent: for each message, every rule that matches and what each of its actions would send where.")
			failed := 0
			for _, m := range msgs {
				fmt.Fprintf(out, "\n%s: message on %s\n", m.Path, m.Topic)
				fmt.Fprintf(out, "    payload %s\n", m.Bytes())
				invs, err := rules.Evaluate(rs, m.Message(env))
				if err != nil {
					failed++
					fmt.Fprintf(out, "    error: %v\n", err)
				}
				rules.WriteInvocations(out, "    ", invs)
			}
			if failed > 0 {
				return withCode(1, fmt.Errorf("%d message(s) could not be evaluated", failed))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&account, "account", rules.LocalEnv.Account, "AWS account id the rules are resolved for")
	cmd.Flags().StringVar(&region, "region", rules.LocalEnv.Region, "AWS region the rules are resolved for")
	return cmd
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
