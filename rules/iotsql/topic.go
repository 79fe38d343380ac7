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

// topicMatches reports whether topic matches filter, without allocating. As in MQTT, a filter that
// starts with a wildcard does not match topics that start with '$' (such as $aws/...).
func topicMatches(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		// next level of each
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := cutLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore && !tmore {
			return true
		}
		if !tmore {
			// "a/#" also matches "a".
			return fmore && frest == "#"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
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
