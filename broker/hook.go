package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook plugs the broker into mochi: it allows every client (local only), rejects client ids that
// cannot be a topic level, emits lifecycle events and feeds client publishes to the sink queue.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "thingpipe" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablish,
		mqtt.OnDisconnect,
		mqtt.OnPublish,
		mqtt.OnWillSent,
		mqtt.OnPacketRead,
	}, []byte{b})
}

// OnConnect rejects client ids containing '/', '+' or '#': they would break the lifecycle topics
// ($aws/events/presence/connected/<clientId>), and AWS IoT does not emit events for them either.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	id := pk.Connect.ClientIdentifier
	if strings.ContainsAny(id, "/+#") {
		h.b.log.Warn("MQTT connect rejected: client id contains '/', '+' or '#'", "client", id, "remote", cl.Net.Remote)
		// 0x85 Client Identifier not valid (MQTT 5); mochi maps it to 0x02 identifier rejected for 3.1.1.
		if err := h.b.server.SendConnack(cl, packets.ErrClientIdentifierNotValid, false, nil); err != nil {
			h.b.log.Debug("sending CONNACK", "client", id, "error", err)
		}
		return packets.ErrClientIdentifierNotValid
	}
	return nil
}

// OnPacketRead closes the connection of a client that publishes at QoS 2: AWS IoT Core has no QoS 2, and
// mochi would otherwise downgrade it and answer PUBACK where a 3.1.1 client waits for PUBREC. It does the
// same with a payload over AWS IoT's 128 KiB limit, which AWS IoT refuses (PAYLOAD_LIMIT_EXCEEDED).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	if n := len(pk.Payload); n > MaxPayloadBytes {
		h.b.log.Warn("publish refused: payload exceeds AWS IoT's 128 KiB limit (PAYLOAD_LIMIT_EXCEEDED); connection closed",
			"client", cl.ID, "topic", pk.TopicName, "bytes", n, "limit", MaxPayloadBytes)
		if cl.Properties.ProtocolVersion == 5 {
			_ = h.b.server.DisconnectClient(cl, packets.ErrPacketTooLarge) // DISCONNECT 0x95, then close
		}
		return pk, fmt.Errorf("%w: payload of %d bytes exceeds %d", packets.ErrRejectPacket, n, MaxPayloadBytes)
	}
	if pk.FixedHeader.Qos < 2 {
		return pk, nil
	}
	h.b.log.Warn("QoS 2 publish refused: AWS IoT Core supports QoS 0 and 1", "client", cl.ID, "topic", pk.TopicName)
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.b.server.DisconnectClient(cl, packets.ErrQosNotSupported) // DISCONNECT 0x9B, then close
	}
	// Only ErrRejectPacket gets through mochi's hook chain; returned from a read it closes the connection.
	return pk, fmt.Errorf("%w: QoS 2 is not supported", packets.ErrRejectPacket)
}

// OnConnectAuthenticate lets everyone in: the broker listens on loopback for local development.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	h.b.log.Info("MQTT client connected", "client", cl.ID, "remote", cl.Net.Remote,
		"protocol", cl.Properties.ProtocolVersion, "username", string(cl.Properties.Username))
	return true
}

// OnACLCheck allows every publish and subscribe, $aws/events/... included.
func (h *hook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// OnSessionEstablish emits the connected event just before mochi sends CONNACK, so the event is queued
// before the client — or anyone reacting to its connection — can publish anything.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	b := h.b
	s := session{id: uuid.NewString(), principal: principal(cl), ip: hostOf(cl.Net.Remote)}
	b.mu.Lock()
	b.version++
	s.version = b.version
	b.sessions[cl] = s
	b.mu.Unlock()
	b.publishPresence(cl.ID, PresenceEvent{
		ClientID:            cl.ID,
		Timestamp:           time.Now().UnixMilli(),
		EventType:           "connected",
		SessionIdentifier:   s.id,
		PrincipalIdentifier: s.principal,
		IPAddress:           s.ip,
		VersionNumber:       s.version,
	})
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	b := h.b
	b.mu.Lock()
	s, ok := b.sessions[cl]
	delete(b.sessions, cl)
	closing := b.closed
	b.mu.Unlock()
	if !ok {
		return
	}
	cause := cl.StopCause()
	if cause == nil {
		cause = err
	}
	reason := disconnectReason(cause)
	if closing {
		// The broker is shutting down: the client may have seen the server's DISCONNECT and hung up
		// first, so the cause mochi records can be an EOF; the decision was still the server's.
		reason = ReasonServerInitiated
	}
	clientInitiated := reason == ReasonClientInitiated
	b.log.Info("MQTT client disconnected", "client", cl.ID, "reason", reason, "cause", cause)
	b.publishPresence(cl.ID, PresenceEvent{
		ClientID:                  cl.ID,
		Timestamp:                 time.Now().UnixMilli(),
		EventType:                 "disconnected",
		SessionIdentifier:         s.id,
		PrincipalIdentifier:       s.principal,
		IPAddress:                 s.ip,
		VersionNumber:             s.version,
		ClientInitiatedDisconnect: &clientInitiated,
		DisconnectReason:          reason,
	})
}

// OnPublish queues a client's message for the sink before mochi acknowledges it, so a QoS 1 PUBACK
// means the message is in the queue. With the Block policy a full queue stalls this client only.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the broker's own publishes were queued by Broker.publish
	}
	b := h.b
	b.mu.Lock()
	d := b.disp
	b.mu.Unlock()
	m := Message{
		Topic:     pk.TopicName,
		Payload:   bytes.Clone(pk.Payload),
		ClientID:  cl.ID,
		QoS:       pk.FixedHeader.Qos,
		Principal: principal(cl),
		Time:      time.Now(),
	}
	if err := d.offer(context.Background(), cl.ID, m); err != nil {
		b.log.Warn("message not queued for the sink", "topic", m.Topic, "client", cl.ID, "error", err)
		return pk, packets.ErrServerBusy // an MQTT 5 QoS 1 publisher gets PUBACK 0x89
	}
	return pk, nil
}

// OnWillSent hands a client's Last Will message to the sink: mochi publishes wills straight to
// subscribers, past OnPublish, but AWS IoT rules see them like any other message.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	b := h.b
	b.mu.Lock()
	d := b.disp
	b.mu.Unlock()
	m := Message{
		Topic:     pk.TopicName,
		Payload:   bytes.Clone(pk.Payload),
		ClientID:  cl.ID,
		QoS:       pk.FixedHeader.Qos,
		Principal: principal(cl),
		Time:      time.Now(),
	}
	if err := d.offer(context.Background(), cl.ID, m); err != nil {
		b.log.Warn("will message not queued for the sink", "topic", m.Topic, "client", cl.ID, "error", err)
	}
}

func (b *Broker) publishPresence(clientID string, ev PresenceEvent) {
	payload, err := json.Marshal(ev)
	if err != nil { // cannot happen: the struct has only strings, numbers and bools
		b.log.Error("encoding lifecycle event", "client", clientID, "error", err)
		return
	}
	topic := PresenceConnectedTopic(clientID)
	if ev.EventType == "disconnected" {
		topic = PresenceDisconnectedTopic(clientID)
	}
	if err := b.publish(context.Background(), clientID, topic, payload, 1); err != nil {
		b.log.Warn("lifecycle event not published", "topic", topic, "error", err)
	}
}

// principal is what stands for AWS IoT's principal (a certificate id, an IAM identity) locally.
func principal(cl *mqtt.Client) string {
	if u := string(cl.Properties.Username); u != "" {
		return u
	}
	return cl.ID
}

func hostOf(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// disconnectReason maps why mochi stopped a client to AWS IoT's disconnectReason.
func disconnectReason(cause error) string {
	var code packets.Code
	var netErr net.Error
	switch {
	case errors.As(cause, &code) && code == packets.CodeDisconnect:
		return ReasonClientInitiated
	case errors.As(cause, &code) && code == packets.ErrSessionTakenOver:
		return ReasonDuplicateID
	case errors.As(cause, &code) && code == packets.ErrServerShuttingDown:
		return ReasonServerInitiated
	case errors.As(cause, &code) && code == packets.CodeDisconnectWillMessage:
		return ReasonClientInitiated // DISCONNECT with "send my will": still the client's decision
	case errors.As(cause, &netErr) && netErr.Timeout():
		return ReasonKeepAlive // mochi's read deadline is 1.5 x the keep-alive
	case cause == nil, errors.Is(cause, io.EOF), errors.Is(cause, net.ErrClosed), isConnReset(cause):
		return ReasonConnectionLost
	default:
		return ReasonClientError
	}
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
