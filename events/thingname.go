package events

import (
	"fmt"
	"strconv"
)

// MaxThingNameLen is AWS IoT's limit on thing names.
const MaxThingNameLen = 128

// ValidateThingName checks name against AWS IoT's thing name pattern [a-zA-Z0-9:_-]{1,128}. Names that
// pass can be used safely in MQTT topics (no wildcards, no slashes), S3 keys and DynamoDB keys.
func ValidateThingName(name string) error {
	if name == "" {
		return fmt.Errorf("empty")
	}
	if len(name) > MaxThingNameLen {
		return fmt.Errorf("%d bytes, longer than %d", len(name), MaxThingNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '-':
		default:
			shown := fmt.Sprintf("byte 0x%02x", c)
			if c >= 0x20 && c < 0x7f {
				shown = strconv.QuoteRune(rune(c))
			}
			return fmt.Errorf("character %d is %s; allowed are letters, digits, ':', '_' and '-'", i, shown)
		}
	}
	return nil
}
