-- Archiving a template is a TemplatePromotion run too (kind 'archive'), so that it cannot overlap
-- a promotion of the same template.
ALTER TABLE template_promotions DROP CONSTRAINT template_promotions_kind_check;
ALTER TABLE template_promotions ADD CONSTRAINT template_promotions_kind_check
    CHECK (kind IN ('promote', 'demote', 'rollback', 'archive'));
