package celery

import (
	"strconv"
	"strings"
)

// keyspace is kombu's Redis key layout: a global key prefix on every key, one list per
// priority step (the lowest step is the bare queue name), and bindings in sets named
// _kombu.binding.<exchange> whose members are routing_key+sep+pattern+sep+queue.
type keyspace struct {
	prefix string
	sep    string
	steps  []int
}

// list is the Redis key of queue's list for one priority step, as kombu's _q_for_pri
// builds it: step 0 is the bare name, any other step is name+sep+step.
func (k keyspace) list(queue string, step int) string {
	if step == 0 {
		return k.prefix + queue
	}
	return k.prefix + queue + k.sep + strconv.Itoa(step)
}

func (k keyspace) unacked() string      { return k.prefix + "unacked" }
func (k keyspace) unackedIndex() string { return k.prefix + "unacked_index" }

const bindingPrefix = "_kombu.binding."

// bindingPattern is the SCAN pattern for every binding set, with the prefix escaped so a
// prefix holding glob characters matches only itself.
func (k keyspace) bindingPattern() string { return globEscape(k.prefix+bindingPrefix) + "*" }

// exchangeOf returns the exchange named by a binding key, or false for a key that is not
// one.
func (k keyspace) exchangeOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.prefix+bindingPrefix)
	return rest, ok
}

// binding is one member of a binding set.
type binding struct {
	exchange, routingKey, queue string
}

// parseBinding splits a binding member. kombu writes exactly three fields; a member
// written with a different sep splits into fewer, which kombu itself would reject.
func (k keyspace) parseBinding(exchange, member string) (binding, bool) {
	parts := strings.Split(member, k.sep)
	if len(parts) != 3 || parts[2] == "" {
		return binding{}, false
	}
	return binding{exchange: exchange, routingKey: parts[0], queue: parts[2]}, true
}

// plumbing reports exchanges and queues that carry Celery's control and event traffic
// rather than tasks: celeryev (events), *.pidbox (remote control) and reply.* (control
// replies). Their queues are short-lived and per worker, so watching them would only add
// noise and label cardinality.
func plumbing(name string) bool {
	return name == "celeryev" || strings.HasPrefix(name, "celeryev.") ||
		strings.HasSuffix(name, ".pidbox") || strings.HasPrefix(name, "reply.")
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
