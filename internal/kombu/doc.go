// Package kombu is the Celery/kombu wire protocol on a Redis broker, written once for
// every reader and writer in flagwarden: the key layout (priority lists, bindings, the
// unacked hash and index), the JSON envelope and its task protocol 1 and 2 bodies, the
// unacked entry format, and the bounded Redis operations built on them (delivery with
// ack emulation, dead-lettering, kombu's restore_visible, and peeks that never bring a
// whole large message into this process).
package kombu
