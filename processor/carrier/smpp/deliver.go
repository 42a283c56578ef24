package smpp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsctl/smsctl/processor/carrier"
)

// esm_class message types (bits 5-2).
const (
	esmTypeMask    = 0x3C
	esmTypeDefault = 0x00
	esmTypeReceipt = 0x04
)

// deliverLoop hands the session's deliver_sm to the sink one at a time and
// answers each once the sink has answered: ESME_ROK when it took it,
// ESME_RX_T_APPN (the SMSC sends it again later) when it failed. It ends
// when the connection does; deliver_sm still queued then are never
// answered, so the SMSC sends them again.
func (c *Carrier) deliverLoop(ctx context.Context, b *bind, s *session) {
	// Sink calls outlive Stop by up to SinkTimeout: an answer the sink
	// gives is worth acknowledging.
	base := context.WithoutCancel(ctx)
	for {
		// A closed connection wins over waiting deliver_sm: their answers
		// could not be sent, so the SMSC sends them again anyway.
		select {
		case <-s.closed:
			return
		default:
		}
		select {
		case <-s.closed:
			return
		case d := <-s.deliveries:
			sctx, cancel := context.WithTimeout(base, c.cfg.SinkTimeout)
			st := c.handleDeliver(sctx, b, d)
			cancel()
			if !s.send(deliverResp(d, st)) {
				b.log.Debug().Msg("deliver_sm_resp not sent: connection closing")
			}
		}
	}
}

// userData is a deliver_sm's message octets (from message_payload when
// short_message is empty), its data_coding and its UDH.
func userData(d *pdu.DeliverSM) (octets []byte, coding byte, udh pdu.UDH) {
	octets, _ = d.Message.GetMessageData()
	udh = d.Message.UDH()
	if len(octets) == 0 && len(udh) == 0 {
		if f, ok := d.OptionalParameters[pdu.TagMessagePayload]; ok {
			octets = f.Data
			if d.EsmClass&data.SM_UDH_GSM != 0 {
				var h pdu.UDH
				if n, err := h.UnmarshalBinary(octets); err == nil && n <= len(octets) {
					udh, octets = h, octets[n:]
				}
			}
		}
	}
	// gosmpp v0.3.1 forgets data_coding values it has no encoding for;
	// those read as Latin-1 in decodeText.
	coding = 0xFF
	if enc := d.Message.Encoding(); enc != nil {
		coding = enc.DataCoding()
	}
	return octets, coding, udh
}

// handleDeliver decides the answer to one deliver_sm.
func (c *Carrier) handleDeliver(ctx context.Context, b *bind, d *pdu.DeliverSM) data.CommandStatusType {
	switch d.EsmClass & esmTypeMask {
	case esmTypeReceipt:
		return c.handleReceipt(ctx, b, d)
	case esmTypeDefault:
		return c.handleInbound(ctx, b, d)
	}
	// SME acknowledgements and intermediate notifications: nothing to do.
	return data.ESME_ROK
}

func (c *Carrier) handleReceipt(ctx context.Context, b *bind, d *pdu.DeliverSM) data.CommandStatusType {
	octets, coding, _ := userData(d)
	text := decodeLatin1(octets) // the keys are ASCII whatever the coding says
	if coding == codingUCS2 {
		text = decodeUCS2(octets)
	}
	r := parseReceipt(d, text)
	if r.ID == "" {
		// Sending it again would not make it readable.
		c.m.receipts.WithLabelValues(b.name, "unreadable").Inc()
		b.log.Warn().Str("receipt", printable(text)).Msg("receipt without a message id refused")
		return data.ESME_RX_P_APPN
	}
	status, final := receiptStatus(r.State)
	if !final {
		label := "not_final"
		if r.State != "ENROUTE" && r.State != "ACCEPTD" && r.State != "ACCEPTED" {
			label = "unknown_state"
			b.log.Warn().Str("carrier_id", r.ID).Str("state", r.State).Msg("receipt with an unknown state ignored")
		}
		c.m.receipts.WithLabelValues(b.name, label).Inc()
		return data.ESME_ROK
	}
	now := time.Now().UTC()
	doneAt := r.DoneAt
	if doneAt.IsZero() || doneAt.After(now) {
		// Missing, or ahead of us: an SMSC writing local time east of UTC.
		doneAt = now
	}
	err := c.sink.Receipt(ctx, carrier.Receipt{CarrierID: carrier.NormalizeID(r.ID), Status: status, State: r.State, Err: r.Err, DoneAt: doneAt})
	if err != nil {
		b.log.Warn().Err(err).Str("carrier_id", r.ID).Msg("receipt not taken; the SMSC will send it again")
		return data.ESME_RX_T_APPN
	}
	c.m.receipts.WithLabelValues(b.name, string(status)).Inc()
	return data.ESME_ROK
}

// address is an inbound address as the API writes numbers: E.164 with a
// plus when the SMSC says it is international.
func address(a pdu.Address) string {
	if a.Ton() == data.GSM_TON_INTERNATIONAL && !strings.HasPrefix(a.Address(), "+") {
		return "+" + a.Address()
	}
	return a.Address()
}

// handleInbound hands a mobile-originated message to the sink. A part of a
// concatenated message is acknowledged as soon as it is buffered here, and
// the whole message goes to the sink with its last part, whose answer
// says whether the sink took it (if not, the last part comes again and
// completes it again). Holding every part's answer until the end would
// stall SMSCs that send the next part only after the previous one's
// answer. The price: parts buffered here are lost if the processor dies
// before the message is complete, and an incomplete message is dropped
// after InboundPartTimeout.
func (c *Carrier) handleInbound(ctx context.Context, b *bind, d *pdu.DeliverSM) data.CommandStatusType {
	octets, coding, udh := userData(d)
	from, to := address(d.SourceAddr), address(d.DestAddr)
	in := carrier.Inbound{From: from, To: to, ReceivedAt: time.Now().UTC()}
	var key partKey
	seq := d.SequenceNumber
	if ref, total, part, ok := concatInfo(d, udh); ok && total > 1 {
		key = partKey{from: from, to: to, ref: ref, total: total}
		msg, st, dropped := c.parts.add(key, part, octets, coding, seq, in.ReceivedAt)
		if dropped > 0 {
			b.log.Warn().Int("messages", dropped).Dur("after", c.cfg.InboundPartTimeout).
				Msg("incomplete concatenated inbound messages dropped: their other parts never came")
		}
		if st != partComplete {
			if st == partRefused {
				b.log.Warn().Msg("too many incomplete inbound messages; part refused for now")
				return data.ESME_RX_T_APPN
			}
			return data.ESME_ROK
		}
		octets, coding, seq, in.ReceivedAt = msg.octets, msg.coding, msg.firstSeq, msg.first
	}
	text, ok := decodeText(coding, octets)
	if !ok {
		b.log.Warn().Int("data_coding", int(coding)).Msg("inbound message in a coding that is not text; read as Latin-1")
	}
	in.Text = text
	in.CarrierID = inboundID(d, from, to, text, seq)
	if err := c.sink.Inbound(ctx, in); err != nil {
		b.log.Warn().Err(err).Str("carrier_id", in.CarrierID).Msg("inbound message not taken; the SMSC will send it again")
		return data.ESME_RX_T_APPN
	}
	if key != (partKey{}) {
		c.parts.remove(key)
	}
	return data.ESME_ROK
}

// inboundID identifies an inbound message. SMPP 3.4 gives a mobile
// originated message no id; when the SMSC adds receipted_message_id
// anyway, that is it. Otherwise it is made from what the SMSC sent:
// sha256 of sender, recipient, text and the deliver_sm's sequence number
// (the first part's for a concatenated message). The same deliver_sm sent
// again with the same sequence number gives the same id, so the API takes
// it once; the sequence number keeps apart two identical texts a person
// really sent twice. An SMSC that resends with a new sequence number (say
// after a reconnect) makes a duplicate: we prefer that to losing one of
// two real messages.
func inboundID(d *pdu.DeliverSM, from, to, text string, seq int32) string {
	if f, ok := d.OptionalParameters[pdu.TagReceiptedMessageID]; ok {
		if id := strings.TrimSpace(f.String()); id != "" {
			return carrier.NormalizeID(id)
		}
	}
	h := sha256.New()
	for _, s := range []string{from, to, text} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write([]byte{byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)})
	return "MO-" + strings.ToUpper(hex.EncodeToString(h.Sum(nil)[:16]))
}

// concatInfo finds a concatenated message's reference, part count and part
// number: UDH with an 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference, or
// the SAR TLVs.
func concatInfo(d *pdu.DeliverSM, udh pdu.UDH) (ref uint32, total, part byte, ok bool) {
	if ie, found := udh.FindInfoElement(data.UDH_CONCAT_MSG_8_BIT_REF); found && len(ie.Data) == 3 {
		return uint32(ie.Data[0]), ie.Data[1], ie.Data[2], true
	}
	if ie, found := udh.FindInfoElement(data.UDH_CONCAT_MSG_16_BIT_REF); found && len(ie.Data) == 4 {
		// Apart from 8-bit references, which may take the same values.
		return 1<<16 | uint32(ie.Data[0])<<8 | uint32(ie.Data[1]), ie.Data[2], ie.Data[3], true
	}
	r, rok := d.OptionalParameters[pdu.TagSarMsgRefNum]
	t, tok := d.OptionalParameters[pdu.TagSarTotalSegments]
	p, pok := d.OptionalParameters[pdu.TagSarSegmentSeqnum]
	if rok && tok && pok && len(r.Data) == 2 && len(t.Data) == 1 && len(p.Data) == 1 {
		return 2<<16 | uint32(r.Data[0])<<8 | uint32(r.Data[1]), t.Data[0], p.Data[0], true
	}
	return 0, 0, 0, false
}

// printable keeps a receipt's text fit for a log line.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F {
			return '.'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
