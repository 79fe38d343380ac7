package main

import "github.com/spf13/cobra"

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Evaluate, lint, test, plan and apply AWS IoT topic rule files",
		Long: `A rule file (JSON or YAML) is the AWS IoT CreateTopicRule payload plus the rule's name. Resources
in actions are written with placeholders ({{account}}, {{region}}, {{partition}}, {{urlSuffix}})
that are resolved for the target account and region. See docs/rules.md.`,
	}
	cmd.AddCommand(newRulesEvalCmd(), newRulesLintCmd(), newRulesTestCmd(), newRulesRunCmd(),
		newRulesPlanCmd(), newRulesApplyCmd())
	return cmd
}
