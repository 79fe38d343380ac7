package main

import "github.com/spf13/cobra"

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Evaluate, lint, test, plan and apply AWS IoT topic rule files",
	}
	return cmd
}
