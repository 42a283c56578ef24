package sms

import (
	"regexp"
	"strconv"
	"sync"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// fastE164 checks a number already reduced to "+" and digits without
// phonenumbers.Parse, whose regular expressions were the costliest step of
// accepting a message (about a tenth of the API's CPU under load). It does
// what Parse does for such input: split off the country code, build the
// number, then the same possibility check and E.164 formatting as
// NormalizePhone. It answers ok only when the number is possible and
// formats back to itself; anything else (a trunk prefix Parse would strip,
// an unknown country code, a length that doesn't fit) goes the slow way, so
// that every error and every rewrite stays Parse's.
func fastE164(plusDigits string) (e164 string, ok bool) {
	digits := plusDigits[1:]
	if len(digits) < 2 || digits[0] == '0' {
		return "", false
	}
	// Country calling codes are prefix-free: the first known one is it.
	var cc, c int32
	ccLen := 0
	for n := 1; n <= 3 && n < len(digits); n++ {
		c = c*10 + int32(digits[n-1]-'0')
		if len(phonenumbers.GetRegionCodesForCountryCode(int(c))) > 0 {
			cc, ccLen = c, n
			break
		}
	}
	if cc == 0 {
		return "", false
	}
	nsn := digits[ccLen:]
	// Parse strips a national (trunk) prefix only where the country's
	// prefix-for-parsing pattern matches the start; leave those to it.
	trunk, known := trunkPrefixes()[int(cc)]
	if !known || len(nsn) < 2 || len(nsn) > 17 || trunk.MatchString(nsn) {
		return "", false
	}
	national, err := strconv.ParseUint(nsn, 10, 64)
	if err != nil {
		return "", false
	}
	num := &phonenumbers.PhoneNumber{CountryCode: proto.Int32(cc), NationalNumber: proto.Uint64(national)}
	// As Parse does: leading zeros of the national number are kept aside.
	if nsn[0] == '0' {
		num.ItalianLeadingZero = proto.Bool(true)
		zeros := int32(1)
		for int(zeros) < len(nsn)-1 && nsn[zeros] == '0' {
			zeros++
		}
		if zeros != 1 {
			num.NumberOfLeadingZeros = proto.Int32(zeros)
		}
	}
	if phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE {
		return "", false
	}
	if phonenumbers.Format(num, phonenumbers.E164) != plusDigits {
		return "", false
	}
	return plusDigits, true
}

// neverMatches stands for a country without a national prefix.
var neverMatches = regexp.MustCompile(`^\b\B`)

// trunkPrefixes maps each country calling code to its national prefix for
// parsing, anchored at the start, from the main region's metadata, as
// Parse uses it. Built on first use.
var trunkPrefixes = sync.OnceValue(func() map[int]*regexp.Regexp {
	out := make(map[int]*regexp.Regexp)
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return out // every number goes the slow way
	}
	byRegion := make(map[string]*phonenumbers.PhoneMetadata)
	nonGeo := make(map[int]*phonenumbers.PhoneMetadata)
	for _, md := range coll.GetMetadata() {
		if md.GetId() == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
			nonGeo[int(md.GetCountryCode())] = md
		} else {
			byRegion[md.GetId()] = md
		}
	}
	for cc := 1; cc < 1000; cc++ {
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		if region == phonenumbers.UNKNOWN_REGION {
			continue
		}
		md := byRegion[region]
		if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
			md = nonGeo[cc]
		}
		if md == nil {
			continue // no entry: every number of cc goes the slow way
		}
		re := neverMatches
		if p := md.GetNationalPrefixForParsing(); p != "" {
			if re, err = regexp.Compile("^(?:" + p + ")"); err != nil {
				continue
			}
		}
		out[cc] = re
	}
	return out
})
