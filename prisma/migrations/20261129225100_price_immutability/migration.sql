-- Published prices are immutable: a new version is published instead.
CREATE OR REPLACE FUNCTION wellspring_refuse_price_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'published prices are immutable (price_ver %): publish a new version', OLD.ver;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER model_prices_immutable BEFORE UPDATE OR DELETE ON "model_prices"
  FOR EACH ROW EXECUTE FUNCTION wellspring_refuse_price_change();
CREATE TRIGGER price_versions_immutable BEFORE UPDATE OR DELETE ON "price_versions"
  FOR EACH ROW EXECUTE FUNCTION wellspring_refuse_price_change();
