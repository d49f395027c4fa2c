package rebuild

import (
	"errors"
	"testing"

	"github.com/flagwarden/flagwarden/internal/kombu"
	"github.com/flagwarden/flagwarden/internal/posthog"
)

// FuzzCeleryDecode: the consumer's decision on any message is a valid team or a
// refusal with one of the dead-letter reasons, never a panic.
func FuzzCeleryDecode(f *testing.F) {
	c, err := NewCeleryConsumer(nil, okRequester{}, CeleryOptions{Queue: "flagwarden", TeamKwarg: "team_id", Tasks: cacheTasks})
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := kombu.Encode(kombu.Message{Task: cacheTasks[0], ID: "i", Args: []any{7}, Queue: "flagwarden"})
	f.Add(raw)
	raw, _ = kombu.Encode(kombu.Message{Task: "posthog.tasks.other", ID: "i", Args: []any{7}})
	f.Add(raw)
	raw, _ = kombu.Encode(kombu.Message{Task: cacheTasks[1], ID: "i", Kwargs: map[string]any{"team_id": 2147483648}})
	f.Add(raw)
	f.Add([]byte("{not json}"))
	reasons := map[kombu.Reason]bool{}
	for _, r := range kombu.Reasons() {
		reasons[r] = true
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		team, err := c.decode(raw)
		if err != nil {
			var e *kombu.Error
			if !errors.As(err, &e) || !reasons[e.Reason] {
				t.Fatalf("refusal %v has no dead-letter reason", err)
			}
			return
		}
		if !posthog.ValidTeamID(team) {
			t.Fatalf("accepted team %d", team)
		}
	})
}
