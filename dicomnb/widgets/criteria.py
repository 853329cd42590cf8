"""The Query/Retrieve tab's search criteria: text fields, modalities, study date, presets.

:class:`CriteriaForm` gathers a :class:`~dicomnb.SearchCriteria` (:meth:`CriteriaForm.criteria`)
and shows one (:meth:`CriteriaForm.apply`). The nine text fields share one text box: a
field picker chooses which one is typed in, and what is typed in each stays (a summary
line lists them all). The study date is a named :class:`~dicomnb.Period`, recomputed when
the search runs, or "Custom dates" from the two date pickers (picking a date chooses
"Custom dates"). Presets are :func:`dicomnb.presets`: choosing one applies it and makes it
the one applied when the tab opens again; Save asks for a name; Delete removes the
preset chosen (the built-in ones stay).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dicomnb
from dicomnb.core.criteria import TEXT_FIELDS, Period, SearchCriteria
from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import DicomnbError
from dicomnb.core.presets import BUILT_IN, EMPTY
from dicomnb.widgets.common import Alert, button, show

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["CUSTOM", "FIELD_LABELS", "MODALITIES", "CriteriaForm"]

#: The text fields as the field picker names them (SearchCriteria's attribute → label).
FIELD_LABELS: dict[str, str] = {
    "patient_name": "Patient name",
    "patient_id": "Patient ID",
    "accession_number": "Accession number",
    "study_id": "Study ID",
    "study_description": "Study description",
    "study_instance_uid": "Study UID",
    "referring_physician_name": "Referring physician",
    "performing_physician_name": "Performing physician",
    "name_of_physicians_reading_study": "Reading physician",
}
assert set(FIELD_LABELS) == set(TEXT_FIELDS), "a text field of SearchCriteria has no label"

#: The modalities offered (those of a preset that are not listed here are added to it).
MODALITIES: tuple[str, ...] = ("CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "RF", "MG", "OT", "SR",
                               "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "ECG", "IO", "PX", "SM")

#: The period choice meaning "the dates of the date pickers".
CUSTOM = "custom"
_ANY = Period.ALL.value  # shown as "Any date": no date constraint (the criteria's period None)


def _period_options() -> list[tuple[str, str]]:
    return [("Any date" if p is Period.ALL else p.label, p.value) for p in Period] + [("Custom dates", CUSTOM)]


class CriteriaForm(widgets.VBox):
    """The search criteria of the Query/Retrieve tab, with presets.

    Parameters
    ----------
    alert : Alert
        Where a preset that cannot be saved or deleted says why.
    on_change : callable, optional
        Called with no argument after a preset was applied (chosen or cleared).

    Attributes
    ----------
    field, text, summary : Dropdown, Text, HTML
        The text field typed in (``dicomnb-criteria-field``), its text
        (``dicomnb-criteria-text``), every text field filled in (``dicomnb-criteria-summary``).
    modalities : SelectMultiple
        ``dicomnb-criteria-modalities``.
    period, date_from, date_to : Dropdown, DatePicker, DatePicker
        ``dicomnb-criteria-period`` (a Period's value, or :data:`CUSTOM`),
        ``dicomnb-criteria-from``, ``dicomnb-criteria-to``.
    preset, save, delete : Dropdown, Button, Button
        ``dicomnb-criteria-preset``, ``dicomnb-criteria-save``, ``dicomnb-criteria-delete``.
    save_name, save_confirm, save_cancel : Text, Button, Button
        The name asked for by Save (``dicomnb-criteria-save-name``, ``-save-confirm``,
        ``-save-cancel``), hidden until Save is clicked.
    """

    def __init__(self, alert: Alert, on_change: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.add_class("dicomnb-criteria")
        self.alert = alert
        self.on_change = on_change
        self._quiet = False
        self._texts: dict[str, str] = dict.fromkeys(TEXT_FIELDS, "")

        self.field = widgets.Dropdown(options=[(label, name) for name, label in FIELD_LABELS.items()],
                                      value="patient_name", description="Search in",
                                      layout=widgets.Layout(width="18em"))
        self.field.add_class("dicomnb-criteria-field")
        self.text = widgets.Text(placeholder="e.g. Doe* (* and ? are wildcards)", layout=widgets.Layout(width="18em"))
        self.text.add_class("dicomnb-criteria-text")
        self.summary = widgets.HTML()
        self.summary.add_class("dicomnb-criteria-summary")
        self.modalities = widgets.SelectMultiple(options=MODALITIES, value=(), rows=5, description="Modalities",
                                                 tooltip="Studies with any of these modalities (none: every one)",
                                                 layout=widgets.Layout(width="14em"))
        self.modalities.add_class("dicomnb-criteria-modalities")
        self.period = widgets.Dropdown(options=_period_options(), value=_ANY, description="Study date",
                                       layout=widgets.Layout(width="18em"))
        self.period.add_class("dicomnb-criteria-period")
        self.date_from = widgets.DatePicker(description="From", value=None, layout=widgets.Layout(width="16em"))
        self.date_from.add_class("dicomnb-criteria-from")
        self.date_to = widgets.DatePicker(description="To", value=None, layout=widgets.Layout(width="16em"))
        self.date_to.add_class("dicomnb-criteria-to")
        self.preset = widgets.Dropdown(options=[], description="Preset", layout=widgets.Layout(width="18em"))
        self.preset.add_class("dicomnb-criteria-preset")
        self.save = button("Save", "dicomnb-criteria-save", "Save these criteria as a preset")
        self.delete = button("Delete", "dicomnb-criteria-delete", "Delete the preset chosen")
        self.save_name = widgets.Text(placeholder="Preset name", layout=widgets.Layout(width="14em"))
        self.save_name.add_class("dicomnb-criteria-save-name")
        self.save_confirm = button("Save preset", "dicomnb-criteria-save-confirm", "Save under this name")
        self.save_cancel = button("Cancel", "dicomnb-criteria-save-cancel", "Do not save")
        self.save_box = widgets.HBox([self.save_name, self.save_confirm, self.save_cancel])
        self.save_box.add_class("dicomnb-criteria-save-box")
        show(self.save_box, False)

        self.text.observe(self._text_changed, names="value")
        self.field.observe(self._field_changed, names="value")
        self.period.observe(self._period_changed, names="value")
        self.date_from.observe(self._date_changed, names="value")
        self.date_to.observe(self._date_changed, names="value")
        self.preset.observe(self._preset_changed, names="value")
        self.save.on_click(lambda _: self._ask_name())
        self.save_confirm.on_click(lambda _: self.save_preset(self.save_name.value))
        self.save_cancel.on_click(lambda _: show(self.save_box, False))
        self.delete.on_click(lambda _: self.delete_preset())

        title = widgets.HTML("<b>Search criteria</b>")
        self.children = (
            title,
            widgets.HBox([self.field, self.text, self.summary], layout=widgets.Layout(align_items="center")),
            widgets.HBox([self.modalities,
                          widgets.VBox([self.period, widgets.HBox([self.date_from, self.date_to])])]),
            widgets.HBox([self.preset, self.save, self.delete, self.save_box],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
        )
        # the preset chosen last (in this session or an earlier one) applies again
        try:
            saved = dicomnb.presets()
            self._show_presets(saved.names(), saved.last_chosen)
            self.apply(saved.current())
        except DicomnbError as exc:  # a corrupt presets file: say so, start empty
            self.alert.error(exc)
            self._show_presets(list(BUILT_IN), EMPTY)

    # -- reading and showing criteria ----------------------------------------------------------------
    def criteria(self) -> SearchCriteria:
        """The criteria shown.

        Raises
        ------
        CriteriaError
            They cannot be sent (the start date after the end date, a backslash in a field...).
        """
        texts = dict(self._texts)
        texts[self.field.value] = self.text.value
        period = self.period.value
        custom = period == CUSTOM
        return SearchCriteria(
            **texts,
            modalities=tuple(self.modalities.value),
            period=None if custom or period == _ANY else period,
            date_from=self.date_from.value if custom else None,
            date_to=self.date_to.value if custom else None,
        )

    def apply(self, criteria: SearchCriteria) -> None:
        """Show ``criteria`` in the form."""
        self._quiet = True
        try:
            self._texts = {name: getattr(criteria, name) for name in TEXT_FIELDS}
            filled = [name for name in TEXT_FIELDS if self._texts[name]]
            if filled and self.field.value not in filled:
                self.field.value = filled[0]
            self.text.value = self._texts[self.field.value]
            extra = [m for m in criteria.modalities if m not in self.modalities.options]
            if extra:
                self.modalities.options = (*self.modalities.options, *extra)
            self.modalities.value = tuple(criteria.modalities)
            if criteria.period is not None:
                self.period.value = criteria.period.value
            elif criteria.date_from or criteria.date_to:
                self.period.value = CUSTOM
            else:
                self.period.value = _ANY
            self.date_from.value = criteria.date_from
            self.date_to.value = criteria.date_to
        finally:
            self._quiet = False
        self._show_summary()

    def _show_summary(self) -> None:
        """List the text fields filled in besides the one shown (they are searched too)."""
        others = [f"{FIELD_LABELS[name]}: {html.escape(text)}" for name, text in self._texts.items()
                  if text and name != self.field.value]
        self.summary.value = f"<small>also {'; '.join(others)}</small>" if others else ""

    def _text_changed(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._texts[self.field.value] = change["new"]
            self._show_summary()

    def _field_changed(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._quiet = True
        try:
            self.text.value = self._texts.get(change["new"], "")
        finally:
            self._quiet = False
        self._show_summary()

    def _period_changed(self, change: dict[str, Any]) -> None:
        if self._quiet or change["new"] == CUSTOM:
            return
        self._quiet = True
        try:  # a named period replaces the dates
            self.date_from.value = None
            self.date_to.value = None
        finally:
            self._quiet = False

    def _date_changed(self, change: dict[str, Any]) -> None:
        if self._quiet or change["new"] is None or self.period.value == CUSTOM:
            return
        self._quiet = True
        try:  # picking a date means custom dates: the other picker keeps what it shows
            self.period.value = CUSTOM
        finally:
            self._quiet = False

    # -- presets -------------------------------------------------------------------------------------
    def _show_presets(self, names: list[str], chosen: str | None) -> None:
        self._quiet = True
        try:
            self.preset.options = names
            self.preset.value = chosen if chosen in names else None
        finally:
            self._quiet = False
        self.delete.disabled = self.preset.value is None or self.preset.value in BUILT_IN

    def _preset_changed(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"] is not None:
            self.choose(change["new"])

    def choose(self, name: str) -> bool:
        """Apply the preset ``name`` and remember it as the one chosen last; False (and the
        alert says why) when the presets cannot be read or saved."""
        try:
            saved = dicomnb.presets()
            criteria = saved.choose(name)
        except DicomnbError as exc:
            self.alert.error(exc)
            return False
        self._show_presets(saved.names(), name)
        self.apply(criteria)
        if self.on_change is not None:
            self.on_change()
        return True

    def clear(self) -> None:
        """Apply the preset "Empty" (no criteria), even when the presets cannot be read or saved."""
        if not self.choose(EMPTY):
            self._show_presets(list(self.preset.options), EMPTY)
            self.apply(BUILT_IN[EMPTY])
            if self.on_change is not None:
                self.on_change()

    def _ask_name(self) -> None:
        current = self.preset.value
        self.save_name.value = current if current and current not in BUILT_IN else ""
        show(self.save_box, True)

    def save_preset(self, name: str) -> bool:
        """Save the criteria shown as the preset ``name`` and choose it; False (and the alert
        says why) when they cannot be saved."""
        try:
            saved = dicomnb.presets()
            saved.save(name, self.criteria())
            name = name.strip()
            saved.choose(name)
        except DicomnbError as exc:
            self.alert.error(exc)
            return False
        show(self.save_box, False)
        self._show_presets(saved.names(), name)
        self.alert.show(f"Saved the preset {name!r}.", "success")
        return True

    def delete_preset(self, name: str | None = None) -> bool:
        """Delete the preset ``name`` (default: the one chosen); the criteria shown stay."""
        name = name if name is not None else self.preset.value
        if name is None:
            return False
        try:
            saved = dicomnb.presets()
            saved.delete(name)
        except DicomnbError as exc:
            self.alert.error(exc)
            return False
        self._show_presets(saved.names(), None)
        self.alert.show(f"Deleted the preset {name!r}.", "success")
        return True
