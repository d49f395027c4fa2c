package celery

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// envelope is kombu's JSON transport envelope as the Redis transport stores it.
type envelope struct {
	Body            string         `json:"body"`
	ContentType     string         `json:"content-type"`
	ContentEncoding string         `json:"content-encoding"`
	Headers         map[string]any `json:"headers"`
	Properties      envelopeProps  `json:"properties"`
}

type envelopeProps struct {
	BodyEncoding string `json:"body_encoding"`
	DeliveryTag  string `json:"delivery_tag"`
	Priority     *int   `json:"priority"`
	DeliveryInfo struct {
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routing_key"`
	} `json:"delivery_info"`
}

// task is what the collector needs from one message.
type task struct {
	Name string
	// Team is the team id found in the arguments; HasTeam is false when the task
	// carries none (or not where the configuration says).
	Team    int64
	HasTeam bool
}

// teamLocator says where a task's team id is: a kwarg name (tried first) or a position
// in args.
type teamLocator struct {
	kwarg    string
	position int
}

var errNotJSON = errors.New("body is not JSON")

// decodeMessage decodes one message as kombu stored it. Celery protocol 2 puts the task
// name in headers.task and the body is [args, kwargs, embed]; protocol 1 puts
// everything in a body object. Any other serializer (pickle, msgpack, yaml) cannot be
// read safely and is reported as undecodable.
func decodeMessage(raw []byte, loc teamLocator) (task, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return task{}, fmt.Errorf("envelope: %w", err)
	}
	return decodeEnvelope(env, loc)
}

func decodeEnvelope(env envelope, loc teamLocator) (task, error) {
	if env.ContentType != "" && env.ContentType != "application/json" {
		return task{}, fmt.Errorf("content type %q: %w", env.ContentType, errNotJSON)
	}
	body := []byte(env.Body)
	switch env.Properties.BodyEncoding {
	case "base64":
		dec, err := base64.StdEncoding.DecodeString(env.Body)
		if err != nil {
			return task{}, fmt.Errorf("body base64: %w", err)
		}
		body = dec
	case "", "utf-8":
	default:
		return task{}, fmt.Errorf("body encoding %q not supported", env.Properties.BodyEncoding)
	}
	var t task
	if name, ok := env.Headers["task"].(string); ok && name != "" {
		t.Name = name
		var parts []json.RawMessage
		if err := unmarshalNumbers(body, &parts); err != nil || len(parts) < 2 {
			return task{}, fmt.Errorf("protocol 2 body is not [args, kwargs, embed]: %w", cmpErr(err, errNotJSON))
		}
		var args []any
		var kwargs map[string]any
		if err := unmarshalNumbers(parts[0], &args); err != nil {
			return task{}, fmt.Errorf("args: %w", err)
		}
		if err := unmarshalNumbers(parts[1], &kwargs); err != nil {
			return task{}, fmt.Errorf("kwargs: %w", err)
		}
		t.Team, t.HasTeam = findTeam(args, kwargs, loc)
		return t, nil
	}
	var v1 struct {
		Task   string         `json:"task"`
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	}
	if err := unmarshalNumbers(body, &v1); err != nil || v1.Task == "" {
		return task{}, fmt.Errorf("no task name in headers or body: %w", cmpErr(err, errNotJSON))
	}
	t.Name = v1.Task
	t.Team, t.HasTeam = findTeam(v1.Args, v1.Kwargs, loc)
	return t, nil
}

func cmpErr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

func unmarshalNumbers(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

func findTeam(args []any, kwargs map[string]any, loc teamLocator) (int64, bool) {
	if loc.kwarg != "" {
		if v, ok := kwargs[loc.kwarg]; ok {
			return teamID(v)
		}
	}
	if loc.position >= 0 && loc.position < len(args) {
		return teamID(args[loc.position])
	}
	return 0, false
}

// teamID accepts an integer or a string of digits: callers pass either.
func teamID(v any) (int64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// unackedEntry is one value of the unacked hash: [message, exchange, routing_key].
type unackedEntry struct {
	exchange, routingKey string
}

func decodeUnacked(raw []byte) (unackedEntry, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return unackedEntry{}, fmt.Errorf("unacked entry: %w", err)
	}
	if len(parts) != 3 {
		return unackedEntry{}, fmt.Errorf("unacked entry has %d fields, want 3", len(parts))
	}
	var e unackedEntry
	if err := json.Unmarshal(parts[1], &e.exchange); err != nil {
		return unackedEntry{}, fmt.Errorf("unacked exchange: %w", err)
	}
	if err := json.Unmarshal(parts[2], &e.routingKey); err != nil {
		return unackedEntry{}, fmt.Errorf("unacked routing key: %w", err)
	}
	return e, nil
}
