package kombu

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Message is a task message as a producer describes it.
type Message struct {
	// Task and ID are the task name and id (required).
	Task, ID string
	// Args and Kwargs are the call's arguments; nil Kwargs is {}.
	Args   []any
	Kwargs map[string]any
	// ArgsRepr is headers.argsrepr, Python's repr of Args (informational).
	ArgsRepr string
	// Queue is the routing key (the default exchange routes it to the queue of that
	// name); Priority the message priority.
	Queue    string
	Priority int
	// DeliveryTag and Origin are properties.delivery_tag and headers.origin.
	DeliveryTag, Origin string
}

// fullEnvelope is kombu's JSON transport envelope for a Celery task protocol 2 message,
// with every field Celery 5 writes, so that a real Celery worker accepts what Encode
// produces.
type fullEnvelope struct {
	Body            string       `json:"body"`
	ContentEncoding string       `json:"content-encoding"`
	ContentType     string       `json:"content-type"`
	Headers         fullHeaders  `json:"headers"`
	Properties      fullProperty `json:"properties"`
}

type fullHeaders struct {
	Lang                string   `json:"lang"`
	Task                string   `json:"task"`
	ID                  string   `json:"id"`
	Shadow              *string  `json:"shadow"`
	ETA                 *string  `json:"eta"`
	Expires             *string  `json:"expires"`
	Group               *string  `json:"group"`
	GroupIndex          *int     `json:"group_index"`
	Retries             int      `json:"retries"`
	TimeLimit           [2]*int  `json:"timelimit"`
	RootID              string   `json:"root_id"`
	ParentID            *string  `json:"parent_id"`
	ArgsRepr            string   `json:"argsrepr"`
	KwargsRepr          string   `json:"kwargsrepr"`
	Origin              string   `json:"origin"`
	IgnoreResult        bool     `json:"ignore_result"`
	ReplacedTaskNesting int      `json:"replaced_task_nesting"`
	Stamps              struct{} `json:"stamps"`
}

type fullProperty struct {
	CorrelationID string `json:"correlation_id"`
	ReplyTo       string `json:"reply_to"`
	DeliveryMode  int    `json:"delivery_mode"`
	DeliveryInfo  struct {
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routing_key"`
	} `json:"delivery_info"`
	Priority     int    `json:"priority"`
	BodyEncoding string `json:"body_encoding"`
	DeliveryTag  string `json:"delivery_tag"`
}

// embed is the third element of a protocol 2 body.
type embed struct {
	Callbacks any `json:"callbacks"`
	Errbacks  any `json:"errbacks"`
	Chain     any `json:"chain"`
	Chord     any `json:"chord"`
}

// Encode returns the bytes kombu's Redis transport would LPUSH for m: the JSON envelope
// with a base64 body of [args, kwargs, embed].
func Encode(m Message) ([]byte, error) {
	if m.Task == "" || m.ID == "" {
		return nil, errors.New("encode celery message: task name and id are required")
	}
	args, kwargs := m.Args, m.Kwargs
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	body, err := json.Marshal([]any{args, kwargs, embed{}})
	if err != nil {
		return nil, fmt.Errorf("encode celery body: %w", err)
	}
	env := fullEnvelope{
		Body:            base64.StdEncoding.EncodeToString(body),
		ContentEncoding: "utf-8",
		ContentType:     "application/json",
		Headers: fullHeaders{
			Lang: "py", Task: m.Task, ID: m.ID, RootID: m.ID,
			ArgsRepr: m.ArgsRepr, KwargsRepr: "{}", Origin: m.Origin,
		},
		Properties: fullProperty{
			CorrelationID: m.ID, ReplyTo: m.DeliveryTag, DeliveryMode: 2,
			Priority: m.Priority, BodyEncoding: "base64", DeliveryTag: m.DeliveryTag,
		},
	}
	env.Properties.DeliveryInfo.RoutingKey = m.Queue
	return json.Marshal(env)
}
