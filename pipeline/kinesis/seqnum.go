package kinesis

import "strings"

// compareSeq compares two Kinesis sequence numbers, decimal strings of up to 128 bits, as integers
// without allocating: -1 if a < b, 0 if equal, 1 if a > b. The empty string sorts before everything.
func compareSeq(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return strings.Compare(a, b)
}
