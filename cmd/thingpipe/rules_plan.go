package main

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/rules"
)

// deployFlags are the flags plan and apply share.
type deployFlags struct {
	account, region string
	prune           bool
	prunePrefix     string
}

func (f *deployFlags) register(cmd *cobra.Command, pruneHelp string) {
	cmd.Flags().StringVar(&f.account, "account", "", "AWS account id to resolve {{account}} for (default: the caller's, from STS GetCallerIdentity)")
	cmd.Flags().StringVar(&f.region, "region", "", "AWS region (default: the SDK's, from AWS_REGION or the profile)")
	cmd.Flags().BoolVar(&f.prune, "prune", false, pruneHelp)
	cmd.Flags().StringVar(&f.prunePrefix, "prune-prefix", "thingpipe_",
		`with --prune, only rules whose names start with this are deleted ("" = every rule without a file)`)
}

const deployLong = `The rule files in DIR are resolved for the target account and region and compared with the topic
rules in AWS IoT (ListTopicRules, GetTopicRule). Each rule is one of:

  + create     no rule of that name in AWS IoT
  ~ replace    it differs (the changed fields are listed: - removed, + added, ~ changed)
  = unchanged  it is the same (compared field by field, defaults filled in, not byte by byte)
  - delete     in AWS IoT without a rule file, with --prune, named under --prune-prefix
  ? unmanaged  in AWS IoT without a rule file, left alone (no --prune, or outside the prefix)

AWS access goes through the SDK's default chain: credentials and region from the environment or
profile, and AWS_ENDPOINT_URL for an emulator such as moto.`

func newRulesPlanCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "plan DIR",
		Short: "Show what apply would change in AWS IoT to match the rule files in DIR",
		Long:  "plan changes nothing.\n\n" + deployLong,
		Example: `  thingpipe rules plan deploy/rules
  AWS_ENDPOINT_URL=http://127.0.0.1:5000 thingpipe rules plan deploy/rules --prune`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, err := planRules(cmd.Context(), cmd.OutOrStdout(), args[0], f)
			return err
		},
	}
	f.register(cmd, "list topic rules in AWS IoT that have no rule file as deletes")
	return cmd
}

func newRulesApplyCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "apply DIR",
		Short: "Make the topic rules in AWS IoT match the rule files in DIR",
		Long: "apply prints the plan, then carries it out without asking: CreateTopicRule, ReplaceTopicRule and,\n" +
			"with --prune, DeleteTopicRule. It exits 1 if any call fails (the others still run).\n\n" + deployLong,
		Example: `  thingpipe rules apply deploy/rules`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			plan, client, err := planRules(cmd.Context(), out, args[0], f)
			if err != nil {
				return err
			}
			if !plan.Pending() {
				fmt.Fprintln(out, "Nothing to apply.")
				return nil
			}
			err = plan.Apply(cmd.Context(), client, func(c rules.Change) {
				fmt.Fprintf(out, "%sd %s\n", c.Kind, c.Name)
			})
			if err != nil {
				return withCode(1, fmt.Errorf("apply: %w", err))
			}
			fmt.Fprintln(out, "Applied.")
			return nil
		},
	}
	f.register(cmd, "also delete topic rules in AWS IoT that have no rule file")
	return cmd
}

// planRules loads and resolves the rules for the caller's account and region and prints the plan.
func planRules(ctx context.Context, out io.Writer, dir string, f deployFlags) (*rules.Plan, *iot.Client, error) {
	files, err := rules.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var opts []func(*config.LoadOptions) error
	if f.region != "" {
		opts = append(opts, config.WithRegion(f.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, nil, fmt.Errorf("no AWS region: set AWS_REGION, a profile region, or --region")
	}
	account := f.account
	if account == "" {
		id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return nil, nil, fmt.Errorf("finding the AWS account (or pass --account): %w", err)
		}
		account = aws.ToString(id.Account)
	}
	env := rules.Env{Account: account, Region: cfg.Region}
	rs, err := rules.ResolveAll(files, env)
	if err != nil {
		return nil, nil, err
	}
	client := iot.NewFromConfig(cfg)
	plan, err := rules.MakePlan(ctx, client, rs, rules.PlanOptions{Prune: f.prune, PrunePrefix: f.prunePrefix})
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(out, "Topic rules in account %s, %s, against %d rule files in %s:\n", account, cfg.Region, len(files), dir)
	plan.Write(out)
	return plan, client, nil
}
