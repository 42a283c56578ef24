package console

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

type keysData struct {
	Rows        []keyRow
	ShowAccount bool
	// NewKey is a key just created, shown this once; NewAccount its account.
	NewKey     string
	NewAccount string
	// Current is the prefix of the key this session signed in with.
	Current string
	// AccountField asks for the account's name (operators on every account).
	AccountField bool
	Problem      string
}

func (c *Console) keysData(ec echo.Context) (keysData, error) {
	s := sessionOf(ec)
	rows, err := c.read.keys(ec.Request().Context(), s.scope(), 500)
	return keysData{Rows: rows, ShowAccount: s.scope() == 0, Current: s.KeyPrefix, AccountField: s.scope() == 0}, err
}

func (c *Console) keys(ec echo.Context) error {
	d, err := c.keysData(ec)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.page(ec, "keys", "API keys", "keys", d)
}

// createKey creates a key for the session's account (an operator on every
// account names one, created if new, as `smsctl apikey create` does) and
// shows it once, in this answer only: it never travels in a URL.
func (c *Console) createKey(ec echo.Context) error {
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	var name string
	var err error
	if s.scope() != 0 {
		name, err = c.read.accountName(ctx, s.scope())
	} else {
		name, err = sms.NormalizeAccountName(ec.FormValue("account"))
	}
	if err != nil {
		if sms.ErrorCode(err) == sms.CodeInvalid {
			d, derr := c.keysData(ec)
			if derr != nil {
				return c.fail(ec, derr)
			}
			d.Problem = userMessage(err)
			return c.renderKeys(ec, http.StatusBadRequest, d)
		}
		return c.fail(ec, err)
	}
	full, key, err := c.d.Keys.CreateKey(ctx, name)
	if err != nil {
		return c.fail(ec, err)
	}
	c.log.Info().Str("actor", actor(s)).Str("action", "create_key").Str("account", name).Str("key_prefix", key.Prefix).Msg("console action")
	d, err := c.keysData(ec)
	if err != nil {
		return c.fail(ec, err)
	}
	d.NewKey, d.NewAccount = full, name
	return c.renderKeys(ec, http.StatusOK, d)
}

func (c *Console) renderKeys(ec echo.Context, status int, d keysData) error {
	v, err := c.newView(ec, "API keys", "keys", d)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.render(ec, status, "keys", v)
}

// revokeKey revokes one of the session's account's keys (any key for an
// operator); another account's key is not found.
func (c *Console) revokeKey(ec echo.Context) error {
	id, err := strconv.ParseInt(ec.Param("id"), 10, 64)
	if err != nil {
		return c.notFound(ec)
	}
	s := sessionOf(ec)
	prefix, _, err := c.read.revokeKey(ec.Request().Context(), s.scope(), id)
	if err != nil {
		return c.fail(ec, err)
	}
	c.log.Info().Str("actor", actor(s)).Str("action", "revoke_key").Str("key_prefix", prefix).Msg("console action")
	return ec.Redirect(http.StatusSeeOther, "/console/keys?done=revoked")
}
