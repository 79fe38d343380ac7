package alerting

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxSubjectLen: SNS wants subjects "less than 100 characters long".
const MaxSubjectLen = 99

// Kind of notification.
type Kind string

const (
	KindFiring   Kind = "FIRING"
	KindResolved Kind = "RESOLVED"
)

// attr is the State attribute holding the notice of this kind.
func (k Kind) attr() string {
	if k == KindResolved {
		return "resolved"
	}
	return "firing"
}

// Notification is one email owed to operators.
type Notification struct {
	Kind    Kind
	Policy  Policy
	State   State // the state as stored when the notification was claimed
	EventID string
}

// Subject renders the email subject, e.g. "[CRITICAL] temperature 93.1 > 80 on dev-42" or
// "[RESOLVED] temperature 72.4 < 75 on dev-42": ASCII, no line breaks, at most 99 characters (SNS: fewer than 100).
func (n Notification) Subject() string {
	p, s := n.Policy.withDefaults(), n.State
	var subj string
	if n.Kind == KindResolved {
		subj = fmt.Sprintf("[RESOLVED] %s %s %s %s on %s", p.Metric, num(s.ResolvedValue), clearOp(p), num(*p.Clear), s.ThingName)
	} else {
		subj = fmt.Sprintf("[%s] %s %s %s %s on %s", strings.ToUpper(p.Severity), p.Metric, num(s.FiredValue), badOp(p), num(p.Threshold), s.ThingName)
	}
	if len(subj) > MaxSubjectLen {
		subj = subj[:MaxSubjectLen-3] + "..."
	}
	return subj
}

// Body renders the plain-text email body.
func (n Notification) Body() string {
	p, s := n.Policy.withDefaults(), n.State
	var b strings.Builder
	row := func(label, value string) { fmt.Fprintf(&b, "  %-12s %s\n", label+":", value) }
	if n.Kind == KindResolved {
		fmt.Fprintf(&b, "RESOLVED: %s on %s\n\n", p.Name, s.ThingName)
		b.WriteString(wrap(fmt.Sprintf("%s is back to %s, %s the clear threshold of %s. The incident lasted %s.",
			p.Metric, num(s.ResolvedValue), word(clearOp(p)), num(*p.Clear), duration(s.FiredAt, s.ResolvedAt)), 72, ""))
		b.WriteString("\n")
		row("Thing", s.ThingName)
		row("Policy", p.Name)
		row("Severity", p.Severity)
		row("Metric", p.Metric)
		row("Value", fmt.Sprintf("%s (clears %s %s)", num(s.ResolvedValue), word(clearOp(p)), num(*p.Clear)))
		row("Worst value", num(s.PeakValue))
		row("Fired at", stamp(s.FiredAt))
		row("Resolved at", stamp(s.ResolvedAt))
		row("Incident", s.IncidentID)
		again := "No action is needed. A new incident will be reported if it happens again."
		if p.Cooldown > 0 {
			again = fmt.Sprintf("No action is needed. A new incident will be reported if it happens again, "+
				"but not within %s of this resolution.", human(p.Cooldown))
		}
		b.WriteString("\n" + wrap(again, 72, ""))
	} else {
		fmt.Fprintf(&b, "%s: %s on %s\n\n", strings.ToUpper(p.Severity), p.Name, s.ThingName)
		readings := "reading"
		if p.Consecutive > 1 {
			readings = fmt.Sprintf("%d consecutive readings", p.Consecutive)
		}
		b.WriteString(wrap(fmt.Sprintf("%s is %s, %s the threshold of %s, for %s since %s.",
			p.Metric, num(s.FiredValue), word(badOp(p)), num(p.Threshold), readings, stamp(s.BreachSince)), 72, ""))
		b.WriteString("\n")
		row("Thing", s.ThingName)
		row("Policy", p.Name)
		row("Severity", p.Severity)
		row("Metric", p.Metric)
		row("Value", fmt.Sprintf("%s (threshold: %s %s)", num(s.FiredValue), word(badOp(p)), num(p.Threshold)))
		row("Since", stamp(s.BreachSince))
		row("Fired at", stamp(s.FiredAt))
		row("Incident", s.IncidentID)
		if p.Runbook != "" {
			b.WriteString("\nWhat to do:\n")
			b.WriteString(wrap(p.Runbook, 72, "  "))
		}
		b.WriteString("\n" + wrap(fmt.Sprintf("This alert resolves when %s is %s %s; you will get one more email then.",
			p.Metric, word(clearOp(p)), num(*p.Clear)), 72, ""))
	}
	b.WriteString("\n-- \nthingpipe alerting\nFilter these emails on the SNS message attributes severity, thingName,\npolicy and status.\n")
	return b.String()
}

func badOp(p Policy) string {
	if p.Comparison == Below {
		return "<"
	}
	return ">"
}

func clearOp(p Policy) string {
	if p.Comparison == Below {
		return ">"
	}
	return "<"
}

func word(op string) string {
	if op == "<" {
		return "below"
	}
	return "above"
}

// num formats a value the way a person writes it: 93.1, 80, 1e+21.
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func stamp(ms int64) string {
	if ms == 0 {
		return "unknown"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
}

func duration(from, to int64) string {
	if from == 0 || to < from {
		return "an unknown time"
	}
	return human(time.Duration(to-from) * time.Millisecond)
}

// human writes a duration for people: "45 seconds", "10 minutes", "2 hours 5 minutes".
func human(d time.Duration) string {
	d = d.Truncate(time.Second)
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d < time.Minute:
		return unit(int64(d/time.Second), "second")
	case d < time.Hour:
		m, s := int64(d/time.Minute), int64(d%time.Minute/time.Second)
		if s == 0 {
			return unit(m, "minute")
		}
		return unit(m, "minute") + " " + unit(s, "second")
	default:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if m == 0 {
			return unit(h, "hour")
		}
		return unit(h, "hour") + " " + unit(m, "minute")
	}
}

// wrap folds text into lines of at most width characters, each prefixed with indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, w := range strings.Fields(text) {
		if i > 0 && line+1+len(w) > width {
			b.WriteString("\n")
			line = 0
		}
		if line == 0 {
			b.WriteString(indent)
		} else {
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\n")
	return b.String()
}
