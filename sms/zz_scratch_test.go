package sms
import ("testing";"math/rand/v2";"strings")
func TestScratchDigits(t *testing.T){
 r := rand.New(rand.NewPCG(1,2))
 ok, fails := 0, 0
 for i:=0;i<3000000;i++{
  n := 2+r.IntN(14)
  var b strings.Builder
  b.WriteByte('+')
  for j:=0;j<n;j++{ if r.IntN(4)==0 {b.WriteByte('0')} else {b.WriteByte(byte('0'+r.IntN(10)))} }
  s := b.String()
  func(){
   defer func(){ if p:=recover(); p!=nil { t.Errorf("panic %q: %v", s, p); fails++ } }()
   got, err := NormalizePhone(s)
   if err==nil { ok++; again, err2 := NormalizePhone(got); if again!=got||err2!=nil { t.Errorf("%q -> %q -> %q %v", s, got, again, err2); fails++ } }
  }()
  if fails > 20 { t.FailNow() }
 }
 t.Logf("ok %d", ok)
}
