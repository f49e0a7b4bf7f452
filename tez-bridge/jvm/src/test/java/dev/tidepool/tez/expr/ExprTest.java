package dev.tidepool.tez.expr;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.json.Json;
import java.io.IOException;
import org.junit.jupiter.api.Test;

class ExprTest {
  private static final String RECORD = "{\"amount\": 12.5, \"qty\": 3, \"name\": \"Widget\","
      + " \"tags\": [\"a\", \"b\"], \"address\": {\"city\": \"Lyon\", \"zip\": null},"
      + " \"active\": true, \"zero\": 0, \"empty\": \"\", \"neg\": -7, \"big\": 9007199254740993}";

  /** Evaluates against RECORD and returns the canonical JSON text of the result. */
  private static String eval(String expr) {
    try {
      JsonNode rec = Json.parse(RECORD);
      return Json.canonical(Expr.compile(expr).eval(rec));
    } catch (ExprParseException | IOException e) {
      throw new AssertionError(expr + ": " + e.getMessage(), e);
    }
  }

  private static ExprParseException parseError(String expr) {
    return assertThrows(ExprParseException.class, () -> Expr.compile(expr), expr);
  }

  @Test
  void literals() {
    assertEquals("1", eval("1"));
    assertEquals("2.5", eval("2.5"));
    assertEquals("0.5", eval(".5"));
    assertEquals("1000", eval("1e3"));
    assertEquals("\"it's\"", eval("'it\\'s'"));
    assertEquals("\"a\\nb\"", eval("'a\\nb'"));
    assertEquals("true", eval("true"));
    assertEquals("false", eval("false"));
    assertEquals("null", eval("null"));
  }

  @Test
  void fieldReferences() {
    assertEquals("12.5", eval("amount"));
    assertEquals("\"Lyon\"", eval("address.city"));
    assertEquals("null", eval("address.zip"));
    assertEquals("null", eval("address.street"));
    assertEquals("null", eval("nothing.at.all"));
    assertEquals("\"b\"", eval("tags.1"));
    assertEquals("null", eval("tags.5"));
    assertEquals("null", eval("name.first"));
    assertEquals("9007199254740993", eval("big"));
  }

  @Test
  void arithmetic() {
    assertEquals("7", eval("1 + 2 * 3"));
    assertEquals("9", eval("(1 + 2) * 3"));
    assertEquals("37.5", eval("amount * qty"));
    assertEquals("2.5", eval("5 / 2"));
    assertEquals("2", eval("4 / 2"));
    assertEquals("1", eval("7 % 3"));
    assertEquals("-1", eval("neg % 3"));
    assertEquals("0.5", eval("2.5 % 1"));
    assertEquals("-3", eval("-qty"));
    assertEquals("3", eval("--qty"));
    assertEquals("1", eval("10 - 4 - 5"), "left associative");
    assertEquals("0.30000000000000004", eval("0.1 + 0.2"), "binary floating point, like JavaScript");
    assertEquals("3", eval("1.5 * 2"), "integral results are integers");
    assertEquals("9007199254740994", eval("big + 1"), "exact integer arithmetic");
    assertEquals("1.8446744073709552E19", eval("9223372036854775807 * 2"), "overflow -> double");
  }

  @Test
  void nullAndTypeMismatchGiveNull() {
    assertEquals("null", eval("missing + 1"));
    assertEquals("null", eval("1 - missing"));
    assertEquals("null", eval("missing * missing"));
    assertEquals("null", eval("-missing"));
    assertEquals("null", eval("name * 2"));
    assertEquals("null", eval("active + 1"));
    assertEquals("null", eval("1 / 0"));
    assertEquals("null", eval("1 % 0"));
    assertEquals("null", eval("1.5 / 0"));
    assertEquals("null", eval("'a' + missing"));
  }

  @Test
  void stringConcatenation() {
    assertEquals("\"Widget-3\"", eval("name + '-' + qty"));
    assertEquals("\"x12.5\"", eval("'x' + amount"));
    assertEquals("\"xtrue\"", eval("'x' + active"));
  }

  @Test
  void comparisons() {
    assertEquals("true", eval("qty > 2"));
    assertEquals("false", eval("qty < 2"));
    assertEquals("true", eval("qty >= 3"));
    assertEquals("true", eval("qty <= 3"));
    assertEquals("true", eval("qty == 3.0"));
    assertEquals("false", eval("qty != 3"));
    assertEquals("true", eval("name == 'Widget'"));
    assertEquals("true", eval("'abc' < 'abd'"));
    assertEquals("false", eval("name == 3"));
    assertEquals("true", eval("missing == null"));
    assertEquals("true", eval("address.zip == null"));
    assertEquals("false", eval("qty == null"));
    assertEquals("true", eval("tags == tags"));
    assertEquals("null", eval("missing < 3"), "ordering with null is null");
    assertEquals("null", eval("name < 3"), "ordering across types is null");
    assertEquals("true", eval("1 + 1 == 2 && 3 > 2"), "precedence");
    assertEquals("true", eval("big > 9007199254740992"), "exact comparison of large integers");
  }

  @Test
  void logic() {
    assertEquals("true", eval("active && qty > 1"));
    assertEquals("false", eval("active && zero"));
    assertEquals("true", eval("zero || name"));
    assertEquals("false", eval("empty || missing"));
    assertEquals("true", eval("!missing"));
    assertEquals("false", eval("!active"));
    assertEquals("true", eval("!!tags"));
    assertEquals("true", eval("true || false && false"), "&& binds tighter than ||");
    assertEquals("false", eval("!(true || false)"));
  }

  @Test
  void functions() {
    assertEquals("6", eval("len(name)"));
    assertEquals("2", eval("len(tags)"));
    assertEquals("null", eval("len(qty)"));
    assertEquals("null", eval("len(missing)"));
    assertEquals("\"widget\"", eval("lower(name)"));
    assertEquals("\"WIDGET\"", eval("upper(name)"));
    assertEquals("null", eval("upper(qty)"));
    assertEquals("\"none\"", eval("coalesce(missing, 'none')"));
    assertEquals("3", eval("coalesce(qty, 'none')"));
    assertEquals("\"c\"", eval("coalesce(missing, address.zip, 'c')"));
    assertEquals("null", eval("coalesce(missing, address.zip)"));
    assertEquals("7", eval("abs(neg)"));
    assertEquals("2.5", eval("abs(-2.5)"));
    assertEquals("13", eval("round(amount)"));
    assertEquals("-2", eval("round(-2.5)"), "half up, like JavaScript Math.round");
    assertEquals("3", eval("round(3)"));
    assertEquals("null", eval("round(name)"));
    assertEquals("3", eval("min(qty, amount)"));
    assertEquals("12.5", eval("max(qty, amount)"));
    assertEquals("\"a\"", eval("min('a', 'b')"));
    assertEquals("null", eval("min(qty, missing)"));
    assertEquals("null", eval("max(qty, name)"));
    assertEquals("\"big\"", eval("if(amount > 10, 'big', 'small')"));
    assertEquals("\"small\"", eval("if(missing, 'big', 'small')"));
    assertEquals("25", eval("if(qty == 3, amount * 2, 1 / 0)"));
    assertEquals("\"WIDGET!\"", eval("upper(coalesce(nick, name)) + '!'"));
  }

  @Test
  void whitespaceIsInsignificant() {
    assertEquals(eval("qty*2+1"), eval("  qty * 2\n + 1 "));
  }

  @Test
  void parseErrors() {
    parseError("");
    parseError("   ");
    parseError("1 +");
    parseError("(1 + 2");
    parseError("1 + 2)");
    parseError("a +* 2");
    parseError("'unterminated");
    parseError("\"double quotes\"");
    parseError("a = 1");
    parseError("a & b");
    parseError("a | b");
    parseError("foo(1)");
    parseError("len()");
    parseError("len(a, b)");
    parseError("if(a, b)");
    parseError("coalesce(a)");
    parseError("min(1)");
    parseError("a.");
    parseError("a..b");
    parseError("1 2");
    parseError("12abc");
    parseError("1e");
    parseError("#");
    parseError("f(1,)");
    parseError("'bad \\q escape'");
    ExprParseException e = parseError("qty + * 2");
    assertEquals(6, e.position());
    assertTrue(e.getMessage().contains("position 6"), e.getMessage());
    ExprParseException unknown = parseError("lenn(name)");
    assertTrue(unknown.getMessage().contains("unknown function 'lenn'"), unknown.getMessage());
  }

  @Test
  void deepNestingIsAnErrorNotAStackOverflow() {
    String deep = "(".repeat(5000) + "1" + ")".repeat(5000);
    parseError(deep);
    parseError("-".repeat(5000) + "1");
    assertEquals("1", eval("(".repeat(50) + "1" + ")".repeat(50)));
  }

  @Test
  void nonObjectRecordsReadAsNull() throws Exception {
    Expr e = Expr.compile("coalesce(a, 'none')");
    assertEquals("\"none\"", Json.canonical(e.eval(Json.parse("[1,2]"))));
    assertEquals("\"none\"", Json.canonical(e.eval(Json.parse("\"text\""))));
    assertEquals("\"none\"", Json.canonical(e.eval(null)));
  }
}
