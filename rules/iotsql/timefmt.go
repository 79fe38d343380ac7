package iotsql

import (
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // parse_time and time_to_epoch name IANA zones; do not depend on the host's tz files
)

// The reference's time functions take Java patterns: Joda-Time's DateTimeFormat for parse_time and
// JDK 11's DateTimeFormatter for time_to_epoch. Both share the common letters, which are what this
// file implements: G y Y u M L d D E e a H k K h m s S z Z X x V and 'quoted text'. Unsupported
// letters make the result Undefined. See docs/iotsql.md for the details and limits.

type patItem struct {
	letter byte // 0 for literal text
	n      int  // repeat count
	lit    string
}

func compilePattern(p string) ([]patItem, bool) {
	var items []patItem
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\'':
			j := i + 1
			var b strings.Builder
			for {
				if j >= len(p) {
					return nil, false
				}
				if p[j] == '\'' {
					if j+1 < len(p) && p[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(p[j])
				j++
			}
			if j == i+1 {
				b.WriteByte('\'') // '' is a quote
			}
			items = append(items, patItem{lit: b.String()})
			i = j + 1
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			j := i
			for j < len(p) && p[j] == c {
				j++
			}
			if !strings.ContainsRune("GyYuMLdDEeaHkKhmsSzZXxVw", rune(c)) {
				return nil, false
			}
			items = append(items, patItem{letter: c, n: j - i})
			i = j
		default:
			items = append(items, patItem{lit: p[i : i+1]})
			i++
		}
	}
	return items, true
}

func pad(b []byte, v int, n int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < n; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func formatJava(items []patItem, t time.Time) (string, bool) {
	var b []byte
	for _, it := range items {
		if it.letter == 0 {
			b = append(b, it.lit...)
			continue
		}
		n := it.n
		switch it.letter {
		case 'G':
			if t.Year() > 0 {
				b = append(b, "AD"...)
			} else {
				b = append(b, "BC"...)
			}
		case 'y', 'Y', 'u':
			y := t.Year()
			if n == 2 {
				b = pad(b, y%100, 2)
			} else {
				b = pad(b, y, n)
			}
		case 'M', 'L':
			switch {
			case n >= 4:
				b = append(b, t.Month().String()...)
			case n == 3:
				b = append(b, t.Month().String()[:3]...)
			default:
				b = pad(b, int(t.Month()), n)
			}
		case 'd':
			b = pad(b, t.Day(), n)
		case 'D':
			b = pad(b, t.YearDay(), n)
		case 'w':
			_, w := t.ISOWeek()
			b = pad(b, w, n)
		case 'E':
			if n >= 4 {
				b = append(b, t.Weekday().String()...)
			} else {
				b = append(b, t.Weekday().String()[:3]...)
			}
		case 'e':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b = pad(b, wd, n)
		case 'a':
			if t.Hour() < 12 {
				b = append(b, "AM"...)
			} else {
				b = append(b, "PM"...)
			}
		case 'H':
			b = pad(b, t.Hour(), n)
		case 'k':
			h := t.Hour()
			if h == 0 {
				h = 24
			}
			b = pad(b, h, n)
		case 'K':
			b = pad(b, t.Hour()%12, n)
		case 'h':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			b = pad(b, h, n)
		case 'm':
			b = pad(b, t.Minute(), n)
		case 's':
			b = pad(b, t.Second(), n)
		case 'S':
			frac := pad(nil, t.Nanosecond(), 9)
			for len(frac) < n {
				frac = append(frac, '0')
			}
			b = append(b, frac[:n]...)
		case 'z':
			name, _ := t.Zone()
			b = append(b, name...)
		case 'V':
			b = append(b, t.Location().String()...)
		case 'Z', 'X', 'x':
			_, off := t.Zone()
			if off == 0 && it.letter == 'X' {
				b = append(b, 'Z')
				continue
			}
			sign := byte('+')
			if off < 0 {
				sign, off = '-', -off
			}
			b = append(b, sign)
			b = pad(b, off/3600, 2)
			colon := (it.letter == 'Z' && n == 2) || (it.letter != 'Z' && n >= 3)
			if it.letter != 'Z' && n == 1 && off%3600 == 0 {
				continue
			}
			if colon {
				b = append(b, ':')
			}
			b = pad(b, off%3600/60, 2)
		default:
			return "", false
		}
	}
	return string(b), true
}

// parseTimeFn implements parse_time(pattern, epochMillis[, timezone]).
func parseTimeFn(c *callExpr, a []value, v2 bool) value {
	ms, ok := intArg(a[1])
	if !ok {
		return undef
	}
	loc := c.loc
	if loc == nil {
		loc = time.UTC
		if len(a) == 3 {
			name, ok := a[2].toStr(v2)
			if !ok {
				return undef
			}
			if loc, ok = lookupZone(name); !ok {
				return undef
			}
		}
	}
	items := c.pattern
	if items == nil {
		pat, ok := a[0].toStr(v2)
		if !ok {
			return undef
		}
		if items, ok = compilePattern(pat); !ok {
			return undef
		}
	}
	s, ok := formatJava(items, time.UnixMilli(ms).In(loc))
	if !ok {
		return undef
	}
	return strV(s)
}

// lookupZone resolves a Joda/Java zone: an IANA name, UTC/GMT/Z, a fixed offset such as
// "+01:00", "UTC+01:00" or "GMT-5", or a common North American abbreviation.
func lookupZone(name string) (*time.Location, bool) {
	switch strings.ToUpper(name) {
	case "UTC", "GMT", "Z", "UT":
		return time.UTC, true
	}
	if off, ok := abbrevOffsets[strings.ToUpper(name)]; ok {
		return time.FixedZone(strings.ToUpper(name), off), true
	}
	rest := name
	for _, p := range []string{"UTC", "GMT", "UT"} {
		if strings.HasPrefix(strings.ToUpper(rest), p) && len(rest) > len(p) && (rest[len(p)] == '+' || rest[len(p)] == '-') {
			rest = rest[len(p):]
			break
		}
	}
	if rest != "" && (rest[0] == '+' || rest[0] == '-') {
		if off, ok := parseOffset(rest); ok {
			return time.FixedZone(name, off), true
		}
		return nil, false
	}
	if name == "" || strings.ContainsAny(name, " \\") || strings.HasPrefix(name, ".") {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		return nil, false
	}
	return loc, true
}

var abbrevOffsets = map[string]int{
	"EST": -5 * 3600, "EDT": -4 * 3600, "CST": -6 * 3600, "CDT": -5 * 3600,
	"MST": -7 * 3600, "MDT": -6 * 3600, "PST": -8 * 3600, "PDT": -7 * 3600,
}

// parseOffset reads +H, +HH, +HHMM, +HH:MM (and the same with '-').
func parseOffset(s string) (int, bool) {
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	s = s[1:]
	var h, m int
	switch {
	case len(s) == 1 || len(s) == 2:
		h, _ = strconv.Atoi(s)
	case len(s) == 4:
		h, _ = strconv.Atoi(s[:2])
		m, _ = strconv.Atoi(s[2:])
	case len(s) == 5 && s[2] == ':':
		h, _ = strconv.Atoi(s[:2])
		m, _ = strconv.Atoi(s[3:])
	default:
		return 0, false
	}
	for _, c := range []byte(strings.ReplaceAll(s, ":", "")) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if h > 18 || m > 59 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}

// timeToEpochFn implements time_to_epoch(timestamp, pattern): milliseconds since the epoch; a
// timestamp without a zone is read as UTC (reference).
func timeToEpochFn(c *callExpr, a []value, v2 bool) value {
	s, ok := a[0].toStr(v2)
	if !ok {
		return undef
	}
	items := c.pattern
	if items == nil {
		pat, ok := a[1].toStr(v2)
		if !ok {
			return undef
		}
		if items, ok = compilePattern(pat); !ok {
			return undef
		}
	}
	t, ok := parseJava(items, s)
	if !ok {
		return undef
	}
	return intV(t.UnixMilli())
}

func isNumericLetter(c byte) bool { return strings.IndexByte("yYuMLdDHkKhmsSwe", c) >= 0 }

func parseJava(items []patItem, s string) (time.Time, bool) {
	year, month, day, hour, min, sec, nsec := 1970, 1, 1, 0, 0, 0, 0
	yday := -1
	pm := -1
	hour12 := false
	loc := time.UTC
	i := 0
	for k, it := range items {
		if it.letter == 0 {
			if !strings.HasPrefix(s[i:], it.lit) {
				return time.Time{}, false
			}
			i += len(it.lit)
			continue
		}
		if (it.letter == 'M' || it.letter == 'L') && it.n >= 3 {
			found := false
			for m := time.January; m <= time.December; m++ {
				name := m.String()
				if it.n == 3 {
					name = name[:3]
				}
				if len(s)-i >= len(name) && strings.EqualFold(s[i:i+len(name)], name) {
					month, i, found = int(m), i+len(name), true
					break
				}
			}
			if !found {
				return time.Time{}, false
			}
			continue
		}
		if isNumericLetter(it.letter) {
			maxDigits := 10
			if k+1 < len(items) && items[k+1].letter != 0 && isNumericLetter(items[k+1].letter) {
				maxDigits = it.n // adjacent numeric fields: fixed width
			}
			j := i
			if it.letter == 'y' || it.letter == 'u' || it.letter == 'Y' {
				if j < len(s) && (s[j] == '-' || s[j] == '+') {
					j++
				}
			}
			for j < len(s) && j-i < maxDigits && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j == i {
				return time.Time{}, false
			}
			v, err := strconv.Atoi(s[i:j])
			if err != nil {
				return time.Time{}, false
			}
			digits := s[i:j]
			i = j
			switch it.letter {
			case 'y', 'Y', 'u':
				if it.n == 2 && len(digits) == 2 {
					v += 2000
				}
				year = v
			case 'M', 'L':
				month = v
			case 'd':
				day = v
			case 'D':
				yday = v
			case 'H':
				hour = v
			case 'k':
				hour = v % 24
			case 'K', 'h':
				hour, hour12 = v%12, true
			case 'm':
				min = v
			case 's':
				sec = v
			case 'S':
				for len(digits) < 9 {
					digits += "0"
				}
				nsec, _ = strconv.Atoi(digits[:9])
			case 'w', 'e':
				// accepted, not used to build the date
			}
			continue
		}
		switch it.letter {
		case 'G':
			if strings.HasPrefix(s[i:], "AD") || strings.HasPrefix(s[i:], "BC") {
				i += 2
				continue
			}
			return time.Time{}, false
		case 'E':
			found := false
			for d := time.Sunday; d <= time.Saturday; d++ {
				name := d.String()
				if it.n < 4 {
					name = name[:3]
				}
				if len(s)-i >= len(name) && strings.EqualFold(s[i:i+len(name)], name) {
					i, found = i+len(name), true
					break
				}
			}
			if !found {
				return time.Time{}, false
			}
		case 'a':
			switch {
			case len(s)-i >= 2 && strings.EqualFold(s[i:i+2], "AM"):
				pm = 0
			case len(s)-i >= 2 && strings.EqualFold(s[i:i+2], "PM"):
				pm = 1
			default:
				return time.Time{}, false
			}
			i += 2
		case 'z', 'V', 'Z', 'X', 'x':
			j := i
			if j < len(s) && s[j] == 'Z' && it.letter != 'z' && it.letter != 'V' {
				loc, i = time.UTC, j+1
				continue
			}
			for j < len(s) && s[j] != ' ' && s[j] != ',' && s[j] != ')' {
				j++
			}
			l, ok := lookupZone(s[i:j])
			if !ok {
				return time.Time{}, false
			}
			loc, i = l, j
		default:
			return time.Time{}, false
		}
	}
	if i != len(s) {
		return time.Time{}, false
	}
	if pm == 1 && hour12 {
		hour += 12
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, loc)
	if yday > 0 {
		t = time.Date(year, 1, yday, hour, min, sec, nsec, loc)
	}
	if t.Day() != day && yday <= 0 {
		return time.Time{}, false // e.g. February 30
	}
	if math.Abs(float64(t.Year())) > 1e6 {
		return time.Time{}, false
	}
	return t, true
}
