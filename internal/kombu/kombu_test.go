package kombu

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog"
)

func envelopeJSON(body, headers string) string {
	return fmt.Sprintf(`{"body": %q, "content-type": "application/json", "headers": %s, "properties": {"body_encoding": "base64", "delivery_tag": "x", "priority": 6, "delivery_info": {"exchange": "", "routing_key": "q"}}}`,
		base64.StdEncoding.EncodeToString([]byte(body)), headers)
}

func TestDecode(t *testing.T) {
	t.Parallel()
	arg := TeamArg{Kwarg: "team_id", Position: 0}
	task2 := `{"task": "update_team_flags_cache", "id": "i-1"}`
	cases := []struct {
		name     string
		raw      string
		wantTask string
		team     int64
		reason   Reason // of the error; "" for none
		teamErr  bool
	}{
		{"protocol 2 args", envelopeJSON(`[[42], {}, {}]`, task2), "update_team_flags_cache", 42, "", false},
		{"protocol 2 kwarg wins", envelopeJSON(`[[1], {"team_id": 43}, {}]`, task2), "update_team_flags_cache", 43, "", false},
		{"team id as string", envelopeJSON(`[["44"], {}, {}]`, task2), "update_team_flags_cache", 44, "", false},
		{"largest int4", envelopeJSON(`[[2147483647], {}, {}]`, task2), "update_team_flags_cache", posthog.MaxTeamID, "", false},
		{"int4 overflow", envelopeJSON(`[[2147483648], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"team zero", envelopeJSON(`[[0], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"negative team", envelopeJSON(`[[-5], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"fractional team", envelopeJSON(`[[5.5], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"non-canonical string", envelopeJSON(`[["+5"], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"no team", envelopeJSON(`[[], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"team not a number", envelopeJSON(`[["abc"], {}, {}]`, task2), "update_team_flags_cache", 0, "", true},
		{"protocol 1", envelopeJSON(`{"task": "old.task", "args": [5], "kwargs": {}}`, `{}`), "old.task", 5, "", false},
		{"not json", `hello`, "", 0, ReasonNotCelery, false},
		{"no body", `{"headers": {"task": "t"}}`, "t", 0, ReasonNotCelery, false},
		{"pickle content", `{"body": "gAN9cQA=", "content-type": "application/x-python-serialize", "properties": {"body_encoding": "base64"}}`, "", 0, ReasonEncoding, false},
		{"bad base64", `{"body": "!!!", "content-type": "application/json", "headers": {"task": "t"}, "properties": {"body_encoding": "base64"}}`, "t", 0, ReasonEncoding, false},
		{"unknown body encoding", `{"body": "x", "headers": {"task": "t"}, "properties": {"body_encoding": "rot13"}}`, "t", 0, ReasonEncoding, false},
		{"body not a list", envelopeJSON(`{"x": 1}`, task2), "update_team_flags_cache", 0, ReasonEncoding, false},
		{"args not a list", envelopeJSON(`[{"a": 1}, {}, {}]`, task2), "update_team_flags_cache", 0, ReasonEncoding, false},
		{"no task anywhere", envelopeJSON(`{"args": []}`, `{}`), "", 0, ReasonNotCelery, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tc.raw), arg)
			require.Equal(t, tc.wantTask, got.Name)
			if tc.reason != "" {
				require.Error(t, err)
				require.Equal(t, tc.reason, ReasonOf(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.teamErr, !got.HasTeam(), "team error: %v", got.TeamErr)
			if tc.teamErr {
				require.Equal(t, ReasonTeamID, ReasonOf(got.TeamErr))
				return
			}
			require.Equal(t, tc.team, got.Team)
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	raw, err := Encode(Message{Task: "posthog.tasks.feature_flags.update_team_flags_cache", ID: "id-1", Args: []any{7}, Queue: "flagwarden", Priority: 6, DeliveryTag: "tag-1"})
	require.NoError(t, err)
	got, err := Decode(raw, TeamArg{})
	require.NoError(t, err)
	require.Equal(t, Task{Name: "posthog.tasks.feature_flags.update_team_flags_cache", ID: "id-1", Team: 7, Priority: 6, RoutingKey: "flagwarden", DeliveryTag: "tag-1"}, got)
	_, err = Encode(Message{})
	require.Error(t, err)
}

func TestKeys(t *testing.T) {
	t.Parallel()
	k := Keys{Prefix: "p[1]:", Steps: []int{0, 3}}
	require.Equal(t, "p[1]:celery", k.List("celery", 0))
	require.Equal(t, "p[1]:celery\x06\x163", k.List("celery", 3))
	require.Equal(t, []string{"p[1]:celery", "p[1]:celery\x06\x163"}, k.Lists("celery"))
	require.Equal(t, `p\[1\]:_kombu.binding.*`, k.BindingPattern())
	require.Equal(t, "p[1]:unacked", k.Unacked())
	require.Equal(t, "p[1]:unacked_index", k.UnackedIndex())
	b, ok := k.ParseBinding("ex", k.BindingMember("rk", "", "q"))
	require.True(t, ok)
	require.Equal(t, Binding{Exchange: "ex", RoutingKey: "rk", Queue: "q"}, b)
	_, ok = k.ParseBinding("ex", "rk:pattern:q") // written with another sep
	require.False(t, ok)
	ex, ok := k.ExchangeOf("p[1]:_kombu.binding.celery")
	require.True(t, ok)
	require.Equal(t, "celery", ex)
	for _, n := range []string{"celeryev", "celeryev.1234", "celery.pidbox", "reply.celery.pidbox"} {
		require.True(t, Plumbing(n), n)
	}
	require.False(t, Plumbing("feature_flags"))
	// kombu's priority(): the largest step not above the priority.
	d := Keys{}
	for p, want := range map[int]int{0: 0, 2: 0, 3: 3, 5: 3, 6: 6, 9: 9, 200: 9} {
		require.Equal(t, want, d.Step(p), "priority %d", p)
	}
}

func TestUnackedEntry(t *testing.T) {
	t.Parallel()
	msg := []byte(`{"body": "x", "headers": {"task": "t"}}`)
	e := UnackedEntry(msg, "", "flag\"warden")
	ex, rk, err := UnackedRoute(e)
	require.NoError(t, err)
	require.Equal(t, "", ex)
	require.Equal(t, "flag\"warden", rk)
	back, err := UnackedMessage(e)
	require.NoError(t, err)
	require.Equal(t, msg, back)
	// Not JSON: stored as a JSON string so the entry stays valid for kombu.
	e = UnackedEntry([]byte("{garbage"), "celery", "q")
	back, err = UnackedMessage(e)
	require.NoError(t, err)
	require.Equal(t, "{garbage", string(back))
	// kombu's own spelling, read from a bounded tail of a large entry.
	big := `[{"body": "` + strings.Repeat("a", 10000) + `"}, "celery", "celery\\\\"]`
	ex, rk, err = UnackedRoute([]byte(big[len(big)-64:]))
	require.NoError(t, err)
	require.Equal(t, "celery", ex)
	require.Equal(t, `celery\\`, rk)
	_, rk, err = UnackedRoute([]byte(`[{}, null, "q"]`))
	require.NoError(t, err)
	require.Equal(t, "q", rk)
	for _, bad := range []string{``, `]`, `[{}, "a"`, `[{}, "a" "b"]`, `"b"]`} {
		_, _, err := UnackedRoute([]byte(bad))
		require.ErrorIs(t, err, ErrUnackedEntry, bad)
	}
}

// FuzzDecode: the consumer's and the collector's decoder never panics, classifies every
// refusal, and never accepts a team id outside posthog_team.id.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(envelopeJSON(`[[42], {}, {}]`, `{"task": "t"}`)))
	f.Add([]byte(envelopeJSON(`[[], {"team_id": "7"}, {}]`, `{"task": "t"}`)))
	f.Add([]byte(envelopeJSON(`{"task": "old", "args": [5]}`, `{}`)))
	f.Add([]byte(envelopeJSON(`[[2147483648], {}, {}]`, `{"task": "t"}`)))
	f.Add([]byte(`{"body": "!!!", "headers": {"task": "t"}, "properties": {"body_encoding": "base64"}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, arg := range []TeamArg{{Kwarg: "team_id"}, {Position: 1}} {
			task, err := Decode(raw, arg)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("unclassified error %v", err)
				}
				continue
			}
			if task.Name == "" {
				t.Fatal("decoded a task without a name")
			}
			if task.HasTeam() && !posthog.ValidTeamID(task.Team) {
				t.Fatalf("accepted team id %d", task.Team)
			}
			if !task.HasTeam() && ReasonOf(task.TeamErr) != ReasonTeamID {
				t.Fatalf("team error %v is not ReasonTeamID", task.TeamErr)
			}
		}
	})
}

// FuzzUnackedRoute: reading the route from any tail never panics, and an entry this
// package writes always yields its route back.
func FuzzUnackedRoute(f *testing.F) {
	f.Add([]byte(`[{"body": "x"}, "", "flagwarden"]`), "ex", "rk")
	f.Add([]byte(`[{}, null, "q"]`), "", "q\"")
	f.Add([]byte(`"b\\"]`), "a\\", "")
	f.Fuzz(func(t *testing.T, tail []byte, ex, rk string) {
		_, _, _ = UnackedRoute(tail)
		e := UnackedEntry(tail, ex, rk)
		gotEx, gotRk, err := UnackedRoute(e)
		if err != nil {
			t.Fatalf("route of %q: %v", e, err)
		}
		// Invalid UTF-8 is replaced by JSON, as it would be for kombu.
		if jsonString(ex) != gotEx || jsonString(rk) != gotRk {
			t.Fatalf("route %q %q, want %q %q", gotEx, gotRk, ex, rk)
		}
		if _, err := UnackedMessage(e); err != nil {
			t.Fatalf("message of %q: %v", e, err)
		}
	})
}

// FuzzParseBinding: a binding member splits into three fields or is refused.
func FuzzParseBinding(f *testing.F) {
	f.Add("rk\x06\x16\x06\x16q")
	f.Add("only-one-field")
	f.Fuzz(func(t *testing.T, member string) {
		b, ok := Keys{}.ParseBinding("ex", member)
		if ok && (b.Queue == "" || Keys{}.BindingMember(b.RoutingKey, strings.Split(member, DefaultSep)[1], b.Queue) != member) {
			t.Fatalf("binding %+v does not round-trip %q", b, member)
		}
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
