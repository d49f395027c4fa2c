package kombu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// UnackedEntry is the value kombu's QoS.append stores in the unacked hash for a
// delivered message: the JSON array [message, exchange, routing_key], from which
// restore_visible puts the message back on the queues the exchange routes it to. A
// message that is not a JSON object goes in as a JSON string, so the entry stays valid
// JSON for every kombu consumer that restores it.
func UnackedEntry(raw []byte, exchange, routingKey string) []byte {
	ex, _ := json.Marshal(exchange)
	rk, _ := json.Marshal(routingKey)
	msg := raw
	if !looksLikeObject(raw) || !json.Valid(raw) {
		msg, _ = json.Marshal(string(raw))
	}
	out := make([]byte, 0, len(msg)+len(ex)+len(rk)+4)
	out = append(out, '[')
	out = append(out, msg...)
	out = append(out, ',')
	out = append(out, ex...)
	out = append(out, ',')
	out = append(out, rk...)
	return append(out, ']')
}

func looksLikeObject(raw []byte) bool {
	return len(raw) >= 2 && raw[0] == '{' && raw[len(raw)-1] == '}'
}

// ErrUnackedEntry is wrapped by every unreadable unacked entry.
var ErrUnackedEntry = errors.New("unacked entry is not [message, exchange, routing_key]")

// UnackedRoute reads exchange and routing key from the end of an unacked entry. It
// needs only the entry's last bytes (kombu writes the two short strings last), so a
// caller can pass a bounded suffix of an entry of any size.
func UnackedRoute(tail []byte) (exchange, routingKey string, err error) {
	i := skipSpaceBack(tail, len(tail)-1)
	if i < 0 || tail[i] != ']' {
		return "", "", fmt.Errorf("%w: no closing bracket", ErrUnackedEntry)
	}
	rkStart, rk, err := stringBack(tail, skipSpaceBack(tail, i-1))
	if err != nil {
		return "", "", fmt.Errorf("%w: routing key: %w", ErrUnackedEntry, err)
	}
	i = skipSpaceBack(tail, rkStart-1)
	if i < 0 || tail[i] != ',' {
		return "", "", fmt.Errorf("%w: no comma before the routing key", ErrUnackedEntry)
	}
	i = skipSpaceBack(tail, i-1)
	if i >= 3 && string(tail[i-3:i+1]) == "null" {
		return "", rk, nil
	}
	_, ex, err := stringBack(tail, i)
	if err != nil {
		return "", "", fmt.Errorf("%w: exchange: %w", ErrUnackedEntry, err)
	}
	return ex, rk, nil
}

func skipSpaceBack(b []byte, i int) int {
	for i >= 0 && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i--
	}
	return i
}

// stringBack decodes the JSON string that ends at b[end] (its closing quote) and
// returns where its opening quote is. Inside a JSON string a quote is always escaped,
// that is preceded by an odd number of backslashes, so the first quote before end with
// an even number of backslashes before it opens the string.
func stringBack(b []byte, end int) (int, string, error) {
	if end < 1 || b[end] != '"' {
		return 0, "", errors.New("not a string")
	}
	for k := end - 1; k >= 0; k-- {
		if b[k] != '"' {
			continue
		}
		n := 0
		for j := k - 1; j >= 0 && b[j] == '\\'; j-- {
			n++
		}
		if n%2 == 1 {
			continue
		}
		var s string
		if err := json.Unmarshal(b[k:end+1], &s); err != nil {
			return 0, "", err
		}
		return k, s, nil
	}
	return 0, "", errors.New("string starts before the bytes given")
}

// UnackedMessage returns the message bytes of an unacked entry written by
// UnackedEntry (or by kombu for a JSON message): the entry minus its bracket and
// route. A message stored as a JSON string is unquoted.
func UnackedMessage(entry []byte) ([]byte, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(entry, &parts); err != nil || len(parts) != 3 {
		return nil, ErrUnackedEntry
	}
	msg := bytes.TrimSpace(parts[0])
	if len(msg) > 0 && msg[0] == '"' {
		var s string
		if err := json.Unmarshal(msg, &s); err != nil {
			return nil, ErrUnackedEntry
		}
		return []byte(s), nil
	}
	return msg, nil
}
