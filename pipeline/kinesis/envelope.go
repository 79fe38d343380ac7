package kinesis

import (
	"encoding/binary"
	"errors"
	"sort"
	"strconv"
)

// envelopeMagic starts every record the Publisher writes in envelope mode. A record starting with
// it carries the watermill UUID and metadata; anything else (IoT rules write raw JSON) is a raw
// record. JSON and text never start with a NUL byte.
var envelopeMagic = [4]byte{0x00, 'T', 'P', 0x01}

// Envelope layout after the magic: uvarint length + UUID, uvarint metadata count, then for each
// entry uvarint length + key, uvarint length + value; the rest of the record is the payload.

// appendEnvelope appends the envelope of (uuid, metadata, payload) to dst.
func appendEnvelope(dst []byte, uuid string, metadata map[string]string, payload []byte) []byte {
	dst = append(dst, envelopeMagic[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(uuid)))
	dst = append(dst, uuid...)
	dst = binary.AppendUvarint(dst, uint64(len(metadata)))
	// Sorted keys keep the bytes deterministic for a given message.
	keys := make([]string, 0, len(metadata))
	for k := range metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := metadata[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return append(dst, payload...)
}

func envelopeSize(uuid string, metadata map[string]string, payload []byte) int {
	n := len(envelopeMagic) + binary.MaxVarintLen64*(2+2*len(metadata)) + len(uuid) + len(payload)
	for k, v := range metadata {
		n += len(k) + len(v)
	}
	return n
}

// errNotEnvelope means the record is raw (no magic); other errors mean a damaged envelope.
var errNotEnvelope = errors.New("not an envelope")

// EnvelopeError describes a record that starts with the envelope magic but is malformed.
type EnvelopeError struct {
	Offset int
	Reason string
}

func (e *EnvelopeError) Error() string {
	return "kinesis envelope: at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

// decodeEnvelope splits an enveloped record. The payload aliases data. It returns errNotEnvelope
// for raw records and an *EnvelopeError for damaged envelopes.
func decodeEnvelope(data []byte) (uuid string, metadata map[string]string, payload []byte, err error) {
	if len(data) < len(envelopeMagic) || [4]byte(data[:4]) != envelopeMagic {
		return "", nil, nil, errNotEnvelope
	}
	pos := len(envelopeMagic)
	readBytes := func(what string) ([]byte, error) {
		n, w := binary.Uvarint(data[pos:])
		if w <= 0 {
			return nil, &EnvelopeError{pos, "bad length of " + what}
		}
		if n > uint64(len(data)-pos-w) { // #nosec G115 -- not negative: Uvarint read w ≤ len(data)-pos bytes
			return nil, &EnvelopeError{pos, what + " longer than the record"}
		}
		b := data[pos+w : pos+w+int(n)] // #nosec G115 -- n ≤ len(data)-pos-w, checked above
		pos += w + int(n)               // #nosec G115 -- n ≤ len(data)-pos-w, checked above
		return b, nil
	}
	id, err := readBytes("uuid")
	if err != nil {
		return "", nil, nil, err
	}
	count, w := binary.Uvarint(data[pos:])
	if w <= 0 {
		return "", nil, nil, &EnvelopeError{pos, "bad metadata count"}
	}
	pos += w
	// Each entry needs at least two bytes, which bounds the map size an attacker can ask for.
	if count > uint64(len(data)-pos)/2 { // #nosec G115 -- not negative: Uvarint read w ≤ len(data)-pos bytes
		return "", nil, nil, &EnvelopeError{pos, "metadata count larger than the record"}
	}
	if count > 0 {
		metadata = make(map[string]string, count)
	}
	for i := uint64(0); i < count; i++ {
		k, err := readBytes("metadata key")
		if err != nil {
			return "", nil, nil, err
		}
		v, err := readBytes("metadata value")
		if err != nil {
			return "", nil, nil, err
		}
		metadata[string(k)] = string(v)
	}
	return string(id), metadata, data[pos:], nil
}
