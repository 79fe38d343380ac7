package iotsql

import "strings"

// validateTopicFilter checks the MQTT rules for wildcards: '#' only as the whole last level, '+' only
// as a whole level. It returns "" when the filter is valid, or what is wrong.
func validateTopicFilter(f string) string {
	if f == "" {
		return "empty"
	}
	levels := strings.Split(f, "/")
	for i, lv := range levels {
		if strings.Contains(lv, "#") && (lv != "#" || i != len(levels)-1) {
			return "'#' must be the whole last level"
		}
		if strings.Contains(lv, "+") && lv != "+" {
			return "'+' must be a whole level"
		}
	}
	return ""
}

// topicFilter is a compiled MQTT topic filter.
type topicFilter struct {
	levels    []string
	wildStart bool // starts with a wildcard: does not match topics starting with '$' (MQTT 4.7.2)
}

func compileTopicFilter(f string) topicFilter {
	levels := strings.Split(f, "/")
	return topicFilter{levels: levels, wildStart: levels[0] == "+" || levels[0] == "#"}
}

// match reports whether topic matches, in one pass and without allocating.
func (f *topicFilter) match(topic string) bool {
	if topic == "" || len(f.levels) == 0 || (f.wildStart && topic[0] == '$') {
		return false
	}
	pos := 0
	for li, lv := range f.levels {
		if lv == "#" {
			return true
		}
		var seg string
		last := false
		if end := strings.IndexByte(topic[pos:], '/'); end < 0 {
			seg, last = topic[pos:], true
		} else {
			seg = topic[pos : pos+end]
			pos += end + 1
		}
		if lv != "+" && lv != seg {
			return false
		}
		if last {
			// The topic ends here: so must the filter, or it may go on with "#" ("a/#" matches "a").
			rest := f.levels[li+1:]
			return len(rest) == 0 || (len(rest) == 1 && rest[0] == "#")
		}
	}
	return false // the filter ended before the topic
}

func cutLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// topicLevel returns the n-th (1-based) level of topic, for topic(n).
func topicLevel(topic string, n int64) (string, bool) {
	if n < 1 {
		return "", false
	}
	for i := int64(1); ; i++ {
		lv, rest, more := cutLevel(topic)
		if i == n {
			return lv, true
		}
		if !more {
			return "", false
		}
		topic = rest
	}
}
