package sms

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Two-way messaging: what a handset's reply asks for (a keyword), the
// account's opt-out list (suppressions), and the messages handsets send to
// the numbers accounts own.

// Keyword is what an inbound text asks for, when it is exactly one of the
// account's keywords.
type Keyword string

// The keywords; the zero value is none.
const (
	// KeywordStop suppresses the sender for the account, and confirms it.
	KeywordStop Keyword = "stop"
	// KeywordStart lifts the suppression, and confirms it.
	KeywordStart Keyword = "start"
	// KeywordHelp gets the help text.
	KeywordHelp Keyword = "help"
)

// The default keywords (CTIA's, and what carriers recognize): an inbound
// text that is exactly one of them, in any case, with surrounding spaces
// ignored, is that keyword.
var (
	DefaultStopWords  = []string{"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
	DefaultStartWords = []string{"START", "UNSTOP", "YES"}
	DefaultHelpWords  = []string{"HELP", "INFO"}
)

// The default automatic replies; each fits one GSM-7 segment.
const (
	DefaultStopReply  = "You are unsubscribed and will receive no further messages. Reply START to subscribe again."
	DefaultStartReply = "You are subscribed again. Reply HELP for help, STOP to unsubscribe."
	DefaultHelpReply  = "Reply STOP to unsubscribe, START to subscribe again. Message and data rates may apply."
)

// Limits of an account's keyword settings.
const (
	// MaxKeywords is the most words one list may hold.
	MaxKeywords = 32
	// MaxKeywordLength is the longest word, in characters.
	MaxKeywordLength = 32
)

// KeywordSettings are an account's keywords and automatic replies. A nil
// list or an empty reply takes the default; an empty (non-nil) list of
// start or help words turns that keyword off. The stop words always
// include STOP.
type KeywordSettings struct {
	StopWords  []string `json:"stop_words"`
	StartWords []string `json:"start_words"`
	HelpWords  []string `json:"help_words"`
	StopReply  string   `json:"stop_reply"`
	StartReply string   `json:"start_reply"`
	HelpReply  string   `json:"help_reply"`
}

// WithDefaults fills what s leaves to the defaults.
func (s KeywordSettings) WithDefaults() KeywordSettings {
	if s.StopWords == nil {
		s.StopWords = DefaultStopWords
	}
	if s.StartWords == nil {
		s.StartWords = DefaultStartWords
	}
	if s.HelpWords == nil {
		s.HelpWords = DefaultHelpWords
	}
	if s.StopReply == "" {
		s.StopReply = DefaultStopReply
	}
	if s.StartReply == "" {
		s.StartReply = DefaultStartReply
	}
	if s.HelpReply == "" {
		s.HelpReply = DefaultHelpReply
	}
	return s
}

// Classify says which keyword text is under s (defaults filled in): the
// whole text, trimmed of surrounding white space, must equal one of the
// words in any case. "stop please" is no keyword.
func (s KeywordSettings) Classify(text string) Keyword {
	s = s.WithDefaults()
	t := strings.TrimSpace(text)
	if t == "" || len(t) > 4*MaxKeywordLength {
		return ""
	}
	match := func(words []string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.EqualFold(w, t) })
	}
	switch {
	case match(s.StopWords):
		return KeywordStop
	case match(s.StartWords):
		return KeywordStart
	case match(s.HelpWords):
		return KeywordHelp
	}
	return ""
}

// Reply is the automatic reply to k under s (defaults filled in); "" for
// no keyword.
func (s KeywordSettings) Reply(k Keyword) string {
	s = s.WithDefaults()
	switch k {
	case KeywordStop:
		return s.StopReply
	case KeywordStart:
		return s.StartReply
	case KeywordHelp:
		return s.HelpReply
	}
	return ""
}

// Normalize checks settings an account asks for and returns them with the
// words upper case: each list at most MaxKeywords words of 1 to
// MaxKeywordLength characters without spaces, no word in two lists, STOP
// among the stop words (carriers require it), replies 1 to MaxTextLength
// characters that are not themselves a keyword (two numbers on automatic
// replies must not answer each other forever).
func (s KeywordSettings) Normalize() (KeywordSettings, error) {
	var v ValidationError
	seen := map[string]string{}
	words := func(field string, in []string) []string {
		if in == nil {
			return nil
		}
		if len(in) > MaxKeywords {
			v.Add(field, fmt.Sprintf("must hold at most %d words", MaxKeywords))
			return nil
		}
		out := make([]string, 0, len(in))
		for i, w := range in {
			name := field + "[" + strconv.Itoa(i) + "]"
			w = strings.ToUpper(strings.TrimSpace(w))
			switch n := utf8.RuneCountInString(w); {
			case n == 0 || n > MaxKeywordLength:
				v.Add(name, fmt.Sprintf("must be 1 to %d characters", MaxKeywordLength))
				continue
			case strings.IndexFunc(w, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
				v.Add(name, "must be one word: no spaces or control characters")
				continue
			}
			if prev, dup := seen[w]; dup {
				v.Add(name, fmt.Sprintf("%q is already in %s: a word can mean one keyword only", w, prev))
				continue
			}
			seen[w] = field
			out = append(out, w)
		}
		return out
	}
	out := KeywordSettings{
		StopWords: words("stop_words", s.StopWords), StartWords: words("start_words", s.StartWords),
		HelpWords: words("help_words", s.HelpWords),
	}
	if s.StopWords != nil && !slices.ContainsFunc(s.StopWords, func(w string) bool { return strings.EqualFold(strings.TrimSpace(w), "STOP") }) {
		v.Add("stop_words", "must include STOP: carriers require that it always works")
	}
	reply := func(field, text string) string {
		if text == "" {
			return ""
		}
		if msg := validateText(text); msg != "" {
			v.Add(field, msg)
			return ""
		}
		return text
	}
	out.StopReply, out.StartReply, out.HelpReply = reply("stop_reply", s.StopReply), reply("start_reply", s.StartReply), reply("help_reply", s.HelpReply)
	if len(v.Violations) == 0 {
		for _, r := range [][2]string{{"stop_reply", out.StopReply}, {"start_reply", out.StartReply}, {"help_reply", out.HelpReply}} {
			if r[1] != "" && out.Classify(r[1]) != "" {
				v.Add(r[0], "must not be a keyword itself: an automatic reply would answer it")
			}
		}
	}
	if err := v.Err(); err != nil {
		return KeywordSettings{}, err
	}
	return out, nil
}

// ErrOptedOut is the answer to a send to a recipient who opted out of the
// account's messages (sent STOP, or was added to its suppressions). Test
// for it with errors.Is; OptedOut names the recipient.
var ErrOptedOut = &Error{Code: CodeUnprocessable, Kind: "opted-out",
	Message: "the recipient opted out of this account's messages"}

// OptedOut is ErrOptedOut naming the recipient.
func OptedOut(phone string) error {
	return &Error{Code: ErrOptedOut.Code, Kind: ErrOptedOut.Kind,
		Message: fmt.Sprintf("recipient %s opted out of this account's messages (replied STOP, or is on the account's suppression list); "+
			"nothing is sent to it until it replies START or the account deletes the suppression (DELETE /v1/suppressions/{phone})", phone)}
}

// Suppression is a recipient an account sends nothing to.
type Suppression struct {
	Phone string `json:"phone" db:"phone"`
	// Reason is "stop" for a STOP reply, else what the account gave
	// ("manual" unless it said).
	Reason    string    `json:"reason" db:"reason"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// Suppression reasons.
const (
	// ReasonStop: the recipient replied STOP.
	ReasonStop = "stop"
	// ReasonManual: the account added it without saying why.
	ReasonManual = "manual"
	// MaxReasonLength is the longest reason, in characters.
	MaxReasonLength = 100
	// MaxSuppressionImport is the most phones one request may add.
	MaxSuppressionImport = 10_000
)

// NormalizeReason checks a reason an account gives for a suppression:
// empty becomes ReasonManual.
func NormalizeReason(reason string) (string, error) {
	r := strings.TrimSpace(reason)
	switch {
	case r == "":
		return ReasonManual, nil
	case utf8.RuneCountInString(r) > MaxReasonLength || !utf8.ValidString(r):
		return "", Invalid("reason", fmt.Sprintf("must be at most %d characters", MaxReasonLength))
	case strings.IndexFunc(r, func(c rune) bool { return !unicode.IsPrint(c) && c != ' ' }) >= 0:
		return "", Invalid("reason", "must not contain control characters")
	}
	return r, nil
}

// SuppressionFilter selects a page of an account's suppressions, newest
// first.
type SuppressionFilter struct {
	// Size is the page size.
	Size int
	// After continues after the last entry of a previous page.
	After *SuppressionCursor
}

// SuppressionCursor marks a position in the newest-first order of
// suppressions.
type SuppressionCursor struct {
	CreatedAt time.Time
	Phone     string
}

// String encodes c for the after query parameter.
func (c SuppressionCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.Phone))
}

// ParseSuppressionCursor decodes an after parameter.
func ParseSuppressionCursor(s string) (SuppressionCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	micros, phone, ok := strings.Cut(string(raw), ".")
	us, err2 := strconv.ParseInt(micros, 10, 64)
	c := SuppressionCursor{CreatedAt: time.UnixMicro(us).UTC(), Phone: phone}
	if err != nil || err2 != nil || !ok || !strings.HasPrefix(phone, "+") || c.String() != s { // only the form String writes
		return SuppressionCursor{}, errors.New("is not a cursor returned by this API")
	}
	return c, nil
}

// SuppressionPage is one page of suppressions.
type SuppressionPage struct {
	Suppressions []Suppression
	TotalCount   int64
	// Next continues the list, or is nil on the last page.
	Next *SuppressionCursor
}

// Number is a phone number an account owns: messages to it are the
// account's.
type Number struct {
	Number string `json:"number" db:"number"`
	// Account is the owner's name (for operators).
	Account   string    `json:"-" db:"account"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// UnroutedNumber is a number nobody owns that received messages.
type UnroutedNumber struct {
	Number       string    `db:"number"`
	Messages     int64     `db:"messages"`
	LastReceived time.Time `db:"last_received"`
}

// InboundMessage is a message a handset sent to one of the account's
// numbers.
type InboundMessage struct {
	ID uuid.UUID `json:"id" db:"id"`
	// AccountID is nil for a message to a number nobody owns.
	AccountID *int64 `json:"-" db:"account_id"`
	From      string `json:"from" db:"sender"`
	To        string `json:"to" db:"recipient"`
	Text      string `json:"text" db:"text"`
	// Keyword is the keyword the text was (and that was applied), or nil.
	Keyword          *Keyword  `json:"keyword" db:"keyword"`
	ReceivedAt       time.Time `json:"received_at" db:"received_at"`
	CarrierMessageID string    `json:"carrier_message_id" db:"carrier_message_id"`
	// ReplyMessageID is the automatic reply it got (a message of the
	// account), or nil.
	ReplyMessageID *uuid.UUID `json:"reply_message_id" db:"reply_message_id"`
	CreatedAt      time.Time  `json:"created_at" db:"created_at"`
}

// InboundResult answers POST /v1/internal/inbound: the same for a repeat
// of the same carrier_message_id.
type InboundResult struct {
	ID            uuid.UUID `json:"id"`
	AccountRouted bool      `json:"account_routed"`
	// Keyword is the keyword applied, or nil.
	Keyword *Keyword `json:"keyword"`
	// ReplyMessageID is the automatic reply queued, or nil.
	ReplyMessageID *uuid.UUID `json:"reply_message_id"`
	// Duplicate says the carrier id was taken before and nothing changed.
	Duplicate bool `json:"-"`
}

// MaxCarrierMessageID is the longest carrier_message_id, in characters
// (Unicode code points), of inbound messages and of reports.
const MaxCarrierMessageID = 128

// Normalize checks a hand-over of an inbound message and returns it with
// both numbers in E.164: from and to phone numbers, text 1 to
// MaxTextLength characters without NUL, received_at set, and
// carrier_message_id 1 to 128 visible characters.
func (r InboundReport) Normalize() (InboundReport, error) {
	var v ValidationError
	var err error
	phone := func(field, raw string) string {
		if strings.TrimSpace(raw) == "" {
			v.Add(field, "required, a phone number in international format")
			return ""
		}
		p, err := NormalizePhone(raw)
		if err != nil {
			v.Add(field, err.Error())
		}
		return p
	}
	out := r
	out.From, out.To = phone("from", r.From), phone("to", r.To)
	switch n := utf8.RuneCountInString(r.Text); {
	case !utf8.ValidString(r.Text):
		v.Add("text", "must be valid UTF-8")
	case n == 0 || n > MaxTextLength:
		v.Add("text", fmt.Sprintf("required, 1 to %d characters", MaxTextLength))
	case strings.ContainsRune(r.Text, 0):
		v.Add("text", "must not contain NUL characters")
	}
	switch {
	case r.ReceivedAt.IsZero():
		v.Add("received_at", "required, an RFC 3339 timestamp")
	case !StorableTime(r.ReceivedAt):
		v.Add("received_at", storableTimeRule)
	}
	out.ReceivedAt = r.ReceivedAt.UTC().Truncate(time.Microsecond)
	// Counted before the trim, as the document's maxLength counts it.
	id := strings.TrimSpace(r.CarrierMessageID)
	switch {
	case id == "" || utf8.RuneCountInString(r.CarrierMessageID) > MaxCarrierMessageID:
		v.Add("carrier_message_id", fmt.Sprintf("required, 1 to %d characters", MaxCarrierMessageID))
	case !utf8.ValidString(id) || strings.IndexFunc(id, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0:
		v.Add("carrier_message_id", "must hold visible characters only")
	}
	out.CarrierMessageID = id
	if err = v.Err(); err != nil {
		return InboundReport{}, err
	}
	return out, nil
}

// InboundFilter selects a page of an account's inbound messages, newest
// (received_at) first.
type InboundFilter struct {
	// From and To, when set (E.164), keep the messages from that handset
	// or to that number.
	From, To string
	// Since and Until, when set, keep messages received at or after Since
	// and before Until.
	Since, Until *time.Time
	// Page is 0-based; ignored when After is set.
	Page int
	// Size is the page size, 1..100.
	Size int
	// After continues after the last message of a previous page
	// (CreatedAt holds its received_at).
	After *Cursor
}

// InboundPage is one page of inbound messages.
type InboundPage struct {
	Messages   []InboundMessage
	TotalCount int64
	// Next continues the list, or is nil on the last page.
	Next *Cursor
}
