package kombu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/flagwarden/flagwarden/internal/posthog"
)

// Reason says why a message cannot be taken as a task; it is the label value that dead
// letters are counted by, so the set is fixed.
type Reason string

// The reasons a message is refused.
const (
	// ReasonNotCelery: not a kombu JSON envelope, or no task name in it.
	ReasonNotCelery Reason = "not_celery"
	// ReasonEncoding: an envelope whose body cannot be read (a serializer other than
	// JSON, bad base64, a body that is not [args, kwargs, embed]).
	ReasonEncoding Reason = "bad_encoding"
	// ReasonTeamID: no team id where the configuration says, or one that does not fit
	// posthog_team.id.
	ReasonTeamID Reason = "team_id"
	// ReasonUnknownTask: a task this reader does not take.
	ReasonUnknownTask Reason = "unknown_task"
	// ReasonOversized: larger than the reader's per-message limit; never read.
	ReasonOversized Reason = "oversized"
)

// Reasons lists every Reason, for pre-creating metric label values.
func Reasons() []Reason {
	return []Reason{ReasonNotCelery, ReasonEncoding, ReasonTeamID, ReasonUnknownTask, ReasonOversized}
}

// Error is a refused message: why, and the detail.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is err's Reason, ReasonNotCelery for an error that carries none.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonNotCelery
}

// TeamArg says where a task's team id is: a kwarg name (tried first) or a position in
// args.
type TeamArg struct {
	Kwarg    string
	Position int
}

// Task is what flagwarden reads from one message.
type Task struct {
	// Name is the task name (headers.task in protocol 2, body.task in protocol 1).
	Name string
	// ID is the task id.
	ID string
	// Team is the team id; valid only when TeamErr is nil.
	Team int64
	// TeamErr says why the message names no valid team (ReasonTeamID). A task can be
	// well formed and still carry none: counting it by name stays possible.
	TeamErr error
	// Priority, RoutingKey and DeliveryTag are the envelope's properties.
	Priority    int
	RoutingKey  string
	DeliveryTag string
}

// HasTeam reports whether the message names a valid team.
func (t Task) HasTeam() bool { return t.TeamErr == nil }

// envelope holds only the fields read: decoding the whole envelope (headers as a map)
// costs twice as much, and a burst is hundreds of thousands of messages.
type envelope struct {
	Body            *string `json:"body"`
	ContentType     string  `json:"content-type"`
	ContentEncoding string  `json:"content-encoding"`
	Headers         struct {
		Task string `json:"task"`
		ID   string `json:"id"`
	} `json:"headers"`
	Properties struct {
		BodyEncoding string          `json:"body_encoding"`
		DeliveryTag  string          `json:"delivery_tag"`
		Priority     json.RawMessage `json:"priority"`
		DeliveryInfo struct {
			RoutingKey string `json:"routing_key"`
		} `json:"delivery_info"`
	} `json:"properties"`
}

// Decode reads one message as kombu's Redis transport stores it. Celery protocol 2 puts
// the task name in headers.task and the body is [args, kwargs, embed]; protocol 1 puts
// everything in a body object. Any other serializer (pickle, msgpack, yaml) cannot be
// read safely and is refused. The error is an *Error; the returned Task carries what
// was read before the failure (the name, when known), so a caller can refuse an
// unwanted task before caring about its body.
func Decode(raw []byte, arg TeamArg) (Task, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return Task{}, refuse(ReasonNotCelery, "not a kombu JSON envelope: %w", err)
	}
	t := Task{Name: env.Headers.Task, ID: env.Headers.ID, RoutingKey: env.Properties.DeliveryInfo.RoutingKey,
		DeliveryTag: env.Properties.DeliveryTag, Priority: priorityOf(env.Properties.Priority)}
	if env.Body == nil {
		return t, refuse(ReasonNotCelery, "envelope has no body")
	}
	if env.ContentType != "" && env.ContentType != "application/json" {
		return t, refuse(ReasonEncoding, "content type %q is not JSON", env.ContentType)
	}
	body := []byte(*env.Body)
	switch env.Properties.BodyEncoding {
	case "base64":
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
		n, err := base64.StdEncoding.Decode(dec, body)
		if err != nil {
			return t, refuse(ReasonEncoding, "body is not base64: %w", err)
		}
		body = dec[:n]
	case "", "utf-8":
	default:
		return t, refuse(ReasonEncoding, "body encoding %q not supported", env.Properties.BodyEncoding)
	}
	var args []json.RawMessage
	var kwargs map[string]json.RawMessage
	if t.Name != "" {
		var parts []json.RawMessage
		if err := json.Unmarshal(body, &parts); err != nil || len(parts) < 2 {
			return t, refuse(ReasonEncoding, "protocol 2 body is not [args, kwargs, embed]")
		}
		if err := json.Unmarshal(parts[0], &args); err != nil {
			return t, refuse(ReasonEncoding, "args are not a list")
		}
		if err := json.Unmarshal(parts[1], &kwargs); err != nil {
			return t, refuse(ReasonEncoding, "kwargs are not an object")
		}
	} else {
		var v1 struct {
			Task   string                     `json:"task"`
			ID     string                     `json:"id"`
			Args   []json.RawMessage          `json:"args"`
			Kwargs map[string]json.RawMessage `json:"kwargs"`
		}
		if err := json.Unmarshal(body, &v1); err != nil || v1.Task == "" {
			return t, refuse(ReasonNotCelery, "no task name in headers or body")
		}
		t.Name, t.ID, args, kwargs = v1.Task, v1.ID, v1.Args, v1.Kwargs
	}
	t.Team, t.TeamErr = findTeam(args, kwargs, arg)
	return t, nil
}

// priorityOf reads properties.priority leniently: producers write an integer, a float
// or null; anything unreadable is the highest priority, where kombu would put it.
func priorityOf(raw json.RawMessage) int {
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > 255 {
		return 0
	}
	return int(f)
}

func findTeam(args []json.RawMessage, kwargs map[string]json.RawMessage, arg TeamArg) (int64, error) {
	if arg.Kwarg != "" {
		if v, ok := kwargs[arg.Kwarg]; ok {
			return ParseTeam(v)
		}
	}
	if arg.Position >= 0 && arg.Position < len(args) {
		return ParseTeam(args[arg.Position])
	}
	return 0, refuse(ReasonTeamID, "no team id at args[%d] or kwargs[%q]", arg.Position, arg.Kwarg)
}

// ParseTeam reads a team id argument: a JSON integer, or a string holding one in
// canonical decimal (callers pass either). Anything that does not fit posthog_team.id
// (zero, negative, beyond int4, fractions) is ReasonTeamID.
func ParseTeam(v json.RawMessage) (int64, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, refuse(ReasonTeamID, "team id %.40s is not a string", v)
		}
		id, err := posthog.ParseTeamID(s)
		if err != nil {
			return 0, &Error{Reason: ReasonTeamID, Err: err}
		}
		return id, nil
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, refuse(ReasonTeamID, "team id %.40s is not a positive integer", v)
		}
	}
	id, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, refuse(ReasonTeamID, "team id %.40s is out of range", v)
	}
	if err := posthog.CheckTeamID(id); err != nil {
		return 0, &Error{Reason: ReasonTeamID, Err: err}
	}
	return id, nil
}
